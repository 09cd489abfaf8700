// A trainable tensor with its gradient and the facts the optimizer and the
// gradient synchronisation need (kind, expert shard).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moe/core/tensor.h"

namespace sb {

enum class ParamKind {
  kEmbedding,  // token embedding (and the tied LM head)
  kNorm,       // RMSNorm scales
  kWeight,     // attention and dense FFN projections, untied LM head
  kRouter,     // router (gate) weights: replicated on every rank
  kExpert,     // expert weights: sharded over the expert-parallel group
};
const char* ParamKindName(ParamKind kind);

struct Parameter {
  // Hugging Face name. Expert stacks hold E_local experts in dim 0 and their
  // name has "{expert}" where the global expert id goes
  // ("model.layers.1.block_sparse_moe.experts.{expert}.w1.weight").
  std::string name;
  ParamKind kind = ParamKind::kWeight;
  Tensor value;                 // the master copy: the optimizer updates it, checkpoints save it
  Tensor grad;                  // value's shape and dtype; accumulates over micro-batches
  int64_t first_expert = 0;     // expert stacks: global id of slice 0
  // Mixed precision (docs/cuda.md): a bf16 copy of an f32 value that the
  // layers' GEMMs read; undefined when layers read value itself. Refreshed
  // from value by RefreshComputeCopy after every change of value.
  Tensor compute_copy;

  bool is_expert() const { return kind == ParamKind::kExpert; }
  // What forward and backward read: the compute copy when there is one.
  const Tensor& compute() const { return compute_copy.defined() ? compute_copy : value; }
  // The HF name of expert slice `local` (or `name` for non-expert tensors).
  std::string SliceName(int64_t local) const;
};

// Allocates value and zeroed grad.
Parameter MakeParameter(std::string name, ParamKind kind, const Shape& shape, DType dtype,
                        Device device, int64_t first_expert = 0);

// Gives p a compute copy of `dtype` (when it differs from value's) and fills it.
void AddComputeCopy(Parameter& p, DType dtype);
// compute_copy = value rounded to its dtype (no-op without a compute copy).
void RefreshComputeCopy(Parameter& p);

// Deterministic init keyed by (seed, name, global expert id): the same
// expert gets the same weights whatever the expert-parallel layout.
void InitNormal(Parameter& p, uint64_t seed, double std);
void InitConstant(Parameter& p, double value);

// Stable 64-bit hash of a string (FNV-1a), for RNG keys.
uint64_t HashName(const std::string& s);

}  // namespace sb
