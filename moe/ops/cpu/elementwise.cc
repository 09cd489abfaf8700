// CPU reference: fills, copies, axpy-style updates and reductions.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "moe/core/device_memory.h"
#include "moe/ops/dispatch.h"
#include "moe/ops/ops.h"

namespace sb::ops {

void Fill(const Tensor& x, double value) {
  SB_ON_CUDA(x, Fill, x, value);
  const int64_t n = x.numel();
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* p = x.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(value);
  });
}

void Copy(const Tensor& src, const Tensor& dst) {
  SB_CHECK(src.numel() == dst.numel() && src.dtype() == dst.dtype())
      << "copy " << src.ToString() << " to " << dst.ToString();
  DeviceCopy(dst.device(), dst.raw(), src.device(), src.raw(), src.nbytes());
}

void Add(const Tensor& a, const Tensor& b, const Tensor& out) {
  SB_ON_CUDA(out, Add, a, b, out);
  CheckSame(a, b, "Add");
  CheckSame(a, out, "Add");
  SB_CHECK(a.numel() == b.numel() && a.numel() == out.numel()) << "Add sizes";
  const int64_t n = a.numel();
  ForFloat(a.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
  });
}

void Mul(const Tensor& a, const Tensor& b, const Tensor& out) {
  SB_ON_CUDA(out, Mul, a, b, out);
  CheckSame(a, b, "Mul");
  CheckSame(a, out, "Mul");
  SB_CHECK(a.numel() == b.numel() && a.numel() == out.numel()) << "Mul sizes";
  const int64_t n = a.numel();
  ForFloat(a.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = pa[i] * pb[i];
  });
}

void Axpy(double alpha, const Tensor& x, const Tensor& y) {
  SB_ON_CUDA(y, Axpy, alpha, x, y);
  CheckSame(x, y, "Axpy");
  SB_CHECK_EQ(x.numel(), y.numel());
  const int64_t n = x.numel();
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T a = static_cast<T>(alpha);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) py[i] += a * px[i];
  });
}

void Scale(const Tensor& x, double alpha) {
  SB_ON_CUDA(x, Scale, x, alpha);
  const int64_t n = x.numel();
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    T* p = x.data<T>();
    const T a = static_cast<T>(alpha);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] *= a;
  });
}

namespace {
// Chunk length of the fixed-order sums below: partial sums of fixed chunks
// added in index order give the same bits for any thread count.
constexpr int64_t kSumChunk = 1 << 13;
}  // namespace

double SumSquares(const Tensor& x) {
  SB_ON_CUDA(x, SumSquares, x);
  const int64_t n = x.numel();
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = x.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t end = std::min(n, (c + 1) * kSumChunk);
      double s = 0.0;
      for (int64_t i = c * kSumChunk; i < end; ++i) s += static_cast<double>(p[i]) * p[i];
      partial[static_cast<size_t>(c)] = s;
    }
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

double SumSquaresOfAll(const std::vector<Tensor>& xs) {
  if (!xs.empty()) SB_ON_CUDA(xs[0], SumSquaresOfAll, xs);
  double total = 0.0;
  for (const Tensor& x : xs) total += SumSquares(x);
  return total;
}

bool AllFinite(const Tensor& x) {
  SB_ON_CUDA(x, AllFinite, x);
  const int64_t n = x.numel();
  int64_t bad = 0;
  ForFloat(x.dtype(), [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = x.data<T>();
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) bad += std::isfinite(p[i]) ? 0 : 1;
  });
  return bad == 0;
}

namespace {
float Bf16ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
// Round to nearest even, as PyTorch and CUDA's __float2bfloat16 do.
uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if (std::isnan(f)) return 0x7fc0;
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}
}  // namespace

void Convert(const Tensor& src, const Tensor& dst) {
  SB_CHECK(src.device() == dst.device()) << "Convert " << src.ToString() << " to "
                                         << dst.ToString() << ": copy across devices first";
  SB_ON_CUDA(dst, Convert, src, dst);
  SB_CHECK_EQ(src.numel(), dst.numel());
  const int64_t n = src.numel();
  auto read = [&](int64_t i) -> double {
    switch (src.dtype()) {
      case DType::kF32: return src.data<float>()[i];
      case DType::kF64: return src.data<double>()[i];
      case DType::kBF16: return Bf16ToFloat(static_cast<const uint16_t*>(src.raw())[i]);
      default: SB_CHECK(false) << "Convert from " << src.ToString(); return 0;
    }
  };
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const double v = read(i);
    switch (dst.dtype()) {
      case DType::kF32: dst.data<float>()[i] = static_cast<float>(v); break;
      case DType::kF64: dst.data<double>()[i] = v; break;
      case DType::kBF16: static_cast<uint16_t*>(dst.raw())[i] = FloatToBf16(static_cast<float>(v)); break;
      default: SB_CHECK(false) << "Convert to " << dst.ToString();
    }
  }
}

}  // namespace sb::ops
