#include "moe/layers/embedding.h"

#include "moe/ops/ops.h"

namespace sb {

Embedding::Embedding(int64_t vocab, int64_t d_model, DType dtype, Device device)
    : weight(MakeParameter("model.embed_tokens.weight", ParamKind::kEmbedding, {vocab, d_model},
                           dtype, device)) {}

Tensor Embedding::Forward(const Tensor& ids) {
  ids_ = ids;
  const Tensor& table = weight.compute();
  Tensor out = out_.Get({ids.numel(), table.dim(1)}, table.dtype(), table.device());
  ops::EmbeddingForward(ids, table, out);
  return out;
}

void Embedding::Backward(const Tensor& dout) { ops::EmbeddingBackward(ids_, dout, weight.grad); }

}  // namespace sb
