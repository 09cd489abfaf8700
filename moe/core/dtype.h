// Element types and devices of tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sb {

// kF64 exists for gradient checks on CPU; kBF16 for GPU activations/weights.
enum class DType : uint8_t { kF32, kF64, kBF16, kI32, kI64 };
enum class Device : uint8_t { kCpu, kCuda };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);
const char* DeviceName(Device device);
inline bool IsFloating(DType d) { return d == DType::kF32 || d == DType::kF64 || d == DType::kBF16; }
// The dtype of statistics and accumulators kept next to activations of dtype
// `d` (RMSNorm's rstd, attention's logsumexp, router and loss math): f32 for
// bf16 activations (ST-MoE's selective precision), otherwise d itself.
inline DType AccumDType(DType d) { return d == DType::kBF16 ? DType::kF32 : d; }

// Maps C++ types to DType for typed access (Tensor::data<T>()).
template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::kF64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kI64; };

}  // namespace sb
