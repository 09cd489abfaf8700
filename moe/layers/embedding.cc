#include "moe/layers/embedding.h"

#include "moe/ops/ops.h"

namespace sb {

Embedding::Embedding(int64_t vocab, int64_t d_model, DType dtype, Device device)
    : weight(MakeParameter("model.embed_tokens.weight", ParamKind::kEmbedding, {vocab, d_model},
                           dtype, device)) {}

Tensor Embedding::Forward(const Tensor& ids) {
  ids_ = ids;
  Tensor out = out_.Get({ids.numel(), weight.value.dim(1)}, weight.value.dtype(),
                        weight.value.device());
  ops::EmbeddingForward(ids, weight.value, out);
  return out;
}

void Embedding::Backward(const Tensor& dout) { ops::EmbeddingBackward(ids_, dout, weight.grad); }

}  // namespace sb
