// Dense bf16 tensor-core peak of NVIDIA GPUs, for model FLOPs utilisation.
// Vendor datasheet numbers without sparsity; MFU divides achieved model
// FLOP/s (Megatron's active-FLOP count) by these.
#pragma once

#include <string>

namespace sb {

struct GpuPeak {
  const char* match;   // substring of cudaDeviceProp::name
  double bf16_tflops;  // dense
};

// Longer names first (an H100 PCIe must not match "H100" SXM first).
inline constexpr GpuPeak kGpuPeaks[] = {
    {"H100 PCIe", 756.0}, {"H100 NVL", 835.0}, {"H100", 989.0},  {"H200 NVL", 835.0},
    {"H200", 989.0},      {"H800", 989.0},     {"GH200", 989.0}, {"B200", 2250.0},
    {"B100", 1750.0},     {"A100", 312.0},     {"A800", 312.0},  {"L40S", 362.0},
    {"L40", 181.0},       {"A10G", 70.0},      {"RTX 4090", 165.0},
};

// 0 when the device is not in the table (MFU is then not reported).
inline double PeakBf16Tflops(const std::string& device_name) {
  for (const GpuPeak& p : kGpuPeaks)
    if (device_name.find(p.match) != std::string::npos) return p.bf16_tflops;
  return 0.0;
}

}  // namespace sb
