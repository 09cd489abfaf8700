#include "launch/gemm_peak.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "moe/core/device_memory.h"
#include "moe/core/rng.h"
#include "moe/core/tensor.h"
#include "moe/ops/ops.h"

namespace sb {

GemmRate MeasureGemm(int64_t m, int64_t n, int64_t k, DType dtype, double min_seconds,
                     Device device) {
  // Values in [-1, 1): no denormals, no overflow.
  auto filled = [dtype, device](int64_t rows, int64_t cols, uint64_t key) {
    std::vector<double> v(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < v.size(); ++i) v[i] = 2.0 * UniformAt(key, i) - 1.0;
    const Tensor host = Tensor::FromVector(v, {rows, cols});
    Tensor t = Tensor::Empty({rows, cols}, dtype, device);
    if (device == Device::kCpu) {
      ops::Convert(host, t);
    } else {  // the values' f32 image, converted on the device
      Tensor f32 = Tensor::Empty({rows, cols}, DType::kF32);
      ops::Convert(host, f32);
      Tensor staged = Tensor::Empty({rows, cols}, DType::kF32, device);
      DeviceCopy(device, staged.raw(), Device::kCpu, f32.raw(), f32.nbytes());
      ops::Convert(staged, t);
    }
    return t;
  };
  const Tensor a = filled(m, k, 1), b = filled(k, n, 2);
  Tensor c = Tensor::Empty({m, n}, dtype, device);
  ops::Gemm(a, false, b, false, c);  // warm-up: pages, thread pool, packing buffers
  DeviceSynchronize();
  GemmRate rate;
  double total = 0.0;
  while (rate.repetitions < 3 || total < min_seconds) {
    const auto start = std::chrono::steady_clock::now();
    ops::Gemm(a, false, b, false, c);
    DeviceSynchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    total += s;
    if (rate.repetitions == 0 || s < rate.seconds) rate.seconds = s;
    ++rate.repetitions;
  }
  rate.flops_per_s = 2.0 * static_cast<double>(m) * n * k / std::max(rate.seconds, 1e-12);
  return rate;
}

}  // namespace sb
