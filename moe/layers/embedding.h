// Token embedding: out[t] = W[ids[t]].
#pragma once

#include "moe/core/parameter.h"

namespace sb {

class Embedding {
 public:
  Embedding(int64_t vocab, int64_t d_model, DType dtype, Device device);
  // ids [T] i32 -> [T, D] in the compute dtype of the table
  Tensor Forward(const Tensor& ids);
  // dout [T, D]; accumulates into weight.grad (ids from the last Forward).
  void Backward(const Tensor& dout);
  Parameter weight;  // [V, D] "model.embed_tokens.weight"

 private:
  Tensor ids_;
  ScratchTensor out_;
};

}  // namespace sb
