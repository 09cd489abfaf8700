// Tensors: typed, contiguous, row-major views into reference-counted memory
// that lives on one device. Views (Reshape, Rows) share the memory; nothing
// here computes: see moe/ops/ops.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moe/core/check.h"
#include "moe/core/dtype.h"

namespace sb {

using Shape = std::vector<int64_t>;
int64_t NumElements(const Shape& shape);
std::string ShapeToString(const Shape& shape);

// Bytes held by the storage of live tensors on one device, and the most
// held at once since the process started or the last ResetPeakTensorBytes
// (all threads; relaxed atomics). What memory tests compare estimates with.
struct TensorBytes {
  int64_t live = 0;
  int64_t peak = 0;
};
TensorBytes TensorBytesOn(Device device);
void ResetPeakTensorBytes();

// Owns one allocation on one device (64-byte aligned on CPU, cudaMalloc on GPU).
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory.
  static Tensor Empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::kCpu);
  static Tensor Zeros(const Shape& shape, DType dtype = DType::kF32, Device device = Device::kCpu);
  // A CPU tensor holding a copy of `values` (tests, small host-side inputs).
  template <typename T>
  static Tensor FromVector(const std::vector<T>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::kCpu; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // dim(-1) is the last dimension.
  int64_t dim(int i) const;
  int64_t numel() const { return NumElements(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  std::string ToString() const;  // "f32[4, 8] cpu"

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <typename T>
  T* data() const {
    SB_CHECK(dtype_ == DTypeOf<T>::value) << "tensor is " << ToString() << ", asked for "
                                          << DTypeName(DTypeOf<T>::value);
    return static_cast<T*>(raw());
  }

  // Same memory, new shape with the same number of elements.
  Tensor Reshape(const Shape& shape) const;
  // Rows [begin, end) of dimension 0, sharing memory.
  Tensor Rows(int64_t begin, int64_t end) const;
  // The same bytes seen as another dtype and shape (must fit).
  Tensor Reinterpret(DType dtype, const Shape& shape) const;
  // Copies the elements to a host vector (converting to double; tests, logs).
  std::vector<double> ToDoubles() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::kF32;
};

class ScratchArena;

// A buffer that is reused across steps and grows only when a larger view is
// asked for: activations whose row count depends on routing (MoE dispatch).
// A ScratchTensor first used while a ScratchArena is active on its thread
// (ScratchArena::Scope) lives in that arena instead: activation
// recomputation lets the same layers of all blocks share their buffers.
class ScratchTensor {
 public:
  // A view of `shape`; contents are unspecified after growth.
  Tensor Get(const Shape& shape, DType dtype, Device device);

 private:
  Tensor storage_;  // 1-D f64 (8-byte aligned rows for any dtype)
  bool placed_ = false;           // where it lives was decided at its first Get
  ScratchArena* arena_ = nullptr;  // non-null: slot `slot_` of this arena
  int slot_ = -1;
};

// Numbered buffers shared by ScratchTensors (activation recomputation,
// docs/cuda.md "Memory"). Inside a Scope, each ScratchTensor used for the
// first time takes the arena's next slot; the scope starts numbering from
// 0, so the i-th first-used buffer of every block shares slot i, and code
// that asks for its buffers in the same order shares them all.
class ScratchArena {
 public:
  class Scope {
   public:
    explicit Scope(ScratchArena* arena);  // null: no arena (a no-op scope)
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    ScratchArena* previous_;
  };
  // Bytes held by all slots.
  int64_t bytes() const;

 private:
  friend class ScratchTensor;
  int Take() { return next_++; }
  Tensor Get(int slot, int64_t bytes, Device device);
  std::vector<Tensor> slots_;
  int next_ = 0;
};

}  // namespace sb
