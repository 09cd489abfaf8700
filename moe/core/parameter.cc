#include "moe/core/parameter.h"

#include "moe/core/device_memory.h"
#include "moe/core/rng.h"
#include "moe/ops/ops.h"

namespace sb {

const char* ParamKindName(ParamKind kind) {
  switch (kind) {
    case ParamKind::kEmbedding: return "embedding";
    case ParamKind::kNorm: return "norm";
    case ParamKind::kWeight: return "weight";
    case ParamKind::kRouter: return "router";
    case ParamKind::kExpert: return "expert";
  }
  return "?";
}

std::string Parameter::SliceName(int64_t local) const {
  const std::string key = "{expert}";
  const size_t pos = name.find(key);
  if (pos == std::string::npos) return name;
  return name.substr(0, pos) + std::to_string(first_expert + local) + name.substr(pos + key.size());
}

Parameter MakeParameter(std::string name, ParamKind kind, const Shape& shape, DType dtype,
                        Device device, int64_t first_expert) {
  Parameter p;
  p.name = std::move(name);
  p.kind = kind;
  p.value = Tensor::Empty(shape, dtype, device);
  p.grad = Tensor::Zeros(shape, dtype, device);
  p.first_expert = first_expert;
  return p;
}

void AddComputeCopy(Parameter& p, DType dtype) {
  if (dtype == p.value.dtype()) {
    p.compute_copy = Tensor();
    return;
  }
  p.compute_copy = Tensor::Empty(p.value.shape(), dtype, p.value.device());
  RefreshComputeCopy(p);
}

void RefreshComputeCopy(Parameter& p) {
  if (p.compute_copy.defined()) ops::Convert(p.value, p.compute_copy);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

void InitNormal(Parameter& p, uint64_t seed, double std) {
  // Fill on the host, then copy: init is rare and must match across devices.
  const int64_t slices = p.is_expert() ? p.value.dim(0) : 1;
  const int64_t per_slice = p.value.numel() / std::max<int64_t>(slices, 1);
  Tensor host = Tensor::Empty(p.value.shape(), DType::kF64);
  double* h = host.data<double>();
  for (int64_t s = 0; s < slices; ++s) {
    const uint64_t key = StreamKey({seed, HashName(p.SliceName(s))});
    // Counter-based draws: any split over threads gives the same values.
#pragma omp parallel for schedule(static) if (per_slice > (1 << 16))
    for (int64_t i = 0; i < per_slice; ++i) h[s * per_slice + i] = std * NormalAt(key, i);
  }
  if (p.value.dtype() == DType::kF64 && p.value.device() == Device::kCpu) {
    ops::Copy(host, p.value);
  } else {
    Tensor cpu = Tensor::Empty(p.value.shape(), p.value.dtype());
    ops::Convert(host, cpu);
    ops::Copy(cpu, p.value);
  }
}

void InitConstant(Parameter& p, double value) { ops::Fill(p.value, value); }

}  // namespace sb
