#include "moe/core/tensor.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "moe/core/device_memory.h"

namespace sb {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    SB_CHECK_GE(d, 0) << "negative dimension in " << ShapeToString(shape);
    n *= d;
  }
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

namespace {

struct ByteCounter {
  std::atomic<int64_t> live{0}, peak{0};
};
ByteCounter& CounterOf(Device device) {
  static ByteCounter counters[2];  // kCpu, kCuda
  return counters[device == Device::kCpu ? 0 : 1];
}

}  // namespace

TensorBytes TensorBytesOn(Device device) {
  const ByteCounter& c = CounterOf(device);
  return {c.live.load(std::memory_order_relaxed), c.peak.load(std::memory_order_relaxed)};
}

void ResetPeakTensorBytes() {
  for (Device d : {Device::kCpu, Device::kCuda}) {
    ByteCounter& c = CounterOf(d);
    c.peak.store(c.live.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = DeviceAlloc(device, bytes);
  ByteCounter& c = CounterOf(device);
  const int64_t live = c.live.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed) +
                       static_cast<int64_t>(bytes);
  int64_t peak = c.peak.load(std::memory_order_relaxed);
  while (live > peak && !c.peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

Storage::~Storage() {
  DeviceFree(device_, data_);
  CounterOf(device_).live.fetch_sub(static_cast<int64_t>(bytes_), std::memory_order_relaxed);
}

Tensor Tensor::Empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::Zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = Empty(shape, dtype, device);
  DeviceMemset(device, t.raw(), 0, t.nbytes());
  return t;
}

template <typename T>
Tensor Tensor::FromVector(const std::vector<T>& values, const Shape& shape) {
  SB_CHECK_EQ(static_cast<int64_t>(values.size()), NumElements(shape));
  Tensor t = Empty(shape, DTypeOf<T>::value, Device::kCpu);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}
template Tensor Tensor::FromVector(const std::vector<float>&, const Shape&);
template Tensor Tensor::FromVector(const std::vector<double>&, const Shape&);
template Tensor Tensor::FromVector(const std::vector<int32_t>&, const Shape&);
template Tensor Tensor::FromVector(const std::vector<int64_t>&, const Shape&);

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  if (i < 0) i += n;
  SB_CHECK(i >= 0 && i < n) << "dim " << i << " of " << ToString();
  return shape_[i];
}

std::string Tensor::ToString() const {
  std::ostringstream s;
  s << DTypeName(dtype_) << ShapeToString(shape_) << " " << DeviceName(device());
  return s.str();
}

Tensor Tensor::Reshape(const Shape& shape) const {
  SB_CHECK_EQ(NumElements(shape), numel()) << "reshape " << ToString() << " to "
                                           << ShapeToString(shape);
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::Rows(int64_t begin, int64_t end) const {
  SB_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0])
      << "rows [" << begin << ", " << end << ") of " << ToString();
  Tensor t = *this;
  const int64_t row_elems = shape_[0] ? numel() / shape_[0] : 0;
  t.offset_ += static_cast<size_t>(begin * row_elems) * DTypeSize(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

std::vector<double> Tensor::ToDoubles() const {
  std::vector<unsigned char> host(nbytes());
  DeviceCopyToHost(device(), host.data(), raw(), nbytes());
  std::vector<double> out(static_cast<size_t>(numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (dtype_) {
      case DType::kF32: out[i] = reinterpret_cast<const float*>(host.data())[i]; break;
      case DType::kF64: out[i] = reinterpret_cast<const double*>(host.data())[i]; break;
      case DType::kI32: out[i] = reinterpret_cast<const int32_t*>(host.data())[i]; break;
      case DType::kI64: out[i] = static_cast<double>(reinterpret_cast<const int64_t*>(host.data())[i]); break;
      case DType::kBF16: {
        uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(host.data())[i]) << 16;
        float f;
        std::memcpy(&f, &bits, sizeof(f));
        out[i] = f;
        break;
      }
    }
  }
  return out;
}

Tensor Tensor::Reinterpret(DType dtype, const Shape& shape) const {
  const size_t need = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  SB_CHECK(need <= nbytes()) << "reinterpret " << ToString() << " as " << DTypeName(dtype)
                             << ShapeToString(shape);
  Tensor t = *this;
  t.dtype_ = dtype;
  t.shape_ = shape;
  return t;
}

namespace {
thread_local ScratchArena* g_current_arena = nullptr;

// storage grown to hold `need` bytes on `device`.
void Reserve(Tensor& storage, int64_t need, Device device) {
  if (!storage.defined() || storage.device() != device ||
      static_cast<int64_t>(storage.nbytes()) < need) {
    // Grow by 1.5x so that slowly increasing sizes do not reallocate each step.
    const int64_t old = storage.defined() ? static_cast<int64_t>(storage.nbytes()) : 0;
    const int64_t bytes = std::max<int64_t>({need, old + old / 2, 64});
    storage = Tensor();  // free first: the old buffer is no longer needed
    storage = Tensor::Empty({(bytes + 7) / 8}, DType::kF64, device);
  }
}
}  // namespace

Tensor ScratchTensor::Get(const Shape& shape, DType dtype, Device device) {
  const int64_t need = NumElements(shape) * static_cast<int64_t>(DTypeSize(dtype));
  if (!placed_) {
    placed_ = true;
    arena_ = g_current_arena;
    if (arena_) slot_ = arena_->Take();
  }
  if (arena_) return arena_->Get(slot_, need, device).Reinterpret(dtype, shape);
  Reserve(storage_, need, device);
  return storage_.Reinterpret(dtype, shape);
}

ScratchArena::Scope::Scope(ScratchArena* arena) : previous_(g_current_arena) {
  g_current_arena = arena;
  if (arena) arena->next_ = 0;
}

ScratchArena::Scope::~Scope() { g_current_arena = previous_; }

Tensor ScratchArena::Get(int slot, int64_t bytes, Device device) {
  if (slot >= static_cast<int>(slots_.size())) slots_.resize(slot + 1);
  Reserve(slots_[slot], bytes, device);
  return slots_[slot];
}

int64_t ScratchArena::bytes() const {
  int64_t total = 0;
  for (const Tensor& t : slots_) total += t.defined() ? static_cast<int64_t>(t.nbytes()) : 0;
  return total;
}

}  // namespace sb
