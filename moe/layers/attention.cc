#include "moe/layers/attention.h"

#include "moe/ops/ops.h"

namespace sb {

Attention::Attention(const std::string& prefix, const AttentionShape& shape, DType dtype,
                     Device device)
    : q_proj(MakeParameter(prefix + "q_proj.weight", ParamKind::kWeight,
                           {int64_t{shape.num_heads} * shape.head_dim, shape.d_model}, dtype, device)),
      k_proj(MakeParameter(prefix + "k_proj.weight", ParamKind::kWeight,
                           {int64_t{shape.num_kv_heads} * shape.head_dim, shape.d_model}, dtype, device)),
      v_proj(MakeParameter(prefix + "v_proj.weight", ParamKind::kWeight,
                           {int64_t{shape.num_kv_heads} * shape.head_dim, shape.d_model}, dtype, device)),
      o_proj(MakeParameter(prefix + "o_proj.weight", ParamKind::kWeight,
                           {shape.d_model, int64_t{shape.num_heads} * shape.head_dim}, dtype, device)),
      shape_(shape) {}

Tensor Attention::Forward(const Tensor& x, int seq_len) {
  const int64_t T = x.dim(0), B = T / seq_len;
  const int64_t qw = int64_t{shape_.num_heads} * shape_.head_dim;
  const int64_t kw = int64_t{shape_.num_kv_heads} * shape_.head_dim;
  const DType dt = x.dtype();
  const Device dev = x.device();
  // Tables in the statistics dtype: f32 next to bf16 activations.
  const DType table_dt = AccumDType(dt);
  if (seq_len != seq_len_ || !rope_cos_.defined() || rope_cos_.dtype() != table_dt ||
      rope_cos_.device() != dev) {
    seq_len_ = seq_len;
    Tensor c = Tensor::Empty({seq_len, shape_.head_dim / 2}, table_dt);
    Tensor s = Tensor::Empty({seq_len, shape_.head_dim / 2}, table_dt);
    ops::RopeTables(seq_len, shape_.head_dim, shape_.rope_theta, c, s);
    rope_cos_ = Tensor::Empty(c.shape(), table_dt, dev);
    rope_sin_ = Tensor::Empty(s.shape(), table_dt, dev);
    ops::Copy(c, rope_cos_);
    ops::Copy(s, rope_sin_);
  }
  x_ = x;
  Tensor q = q_.Get({T, qw}, dt, dev), k = k_.Get({T, kw}, dt, dev), v = v_.Get({T, kw}, dt, dev);
  ops::Gemm(x, false, q_proj.compute(), true, q);
  ops::Gemm(x, false, k_proj.compute(), true, k);
  ops::Gemm(x, false, v_proj.compute(), true, v);
  ops::Rope(q, rope_cos_, rope_sin_, seq_len, /*inverse=*/false);
  ops::Rope(k, rope_cos_, rope_sin_, seq_len, /*inverse=*/false);
  Tensor lse = lse_.Get({B, shape_.num_heads, seq_len}, table_dt, dev);
  Tensor ctx = ctx_.Get({T, qw}, dt, dev);
  ops::CausalAttentionForward(q, k, v, seq_len, lse, ctx);
  Tensor out = out_.Get({T, shape_.d_model}, dt, dev);
  ops::Gemm(ctx, false, o_proj.compute(), true, out);
  return out;
}

Tensor Attention::Backward(const Tensor& dout) {
  const int64_t T = x_.dim(0), B = T / seq_len_;
  const int64_t qw = int64_t{shape_.num_heads} * shape_.head_dim;
  const int64_t kw = int64_t{shape_.num_kv_heads} * shape_.head_dim;
  const DType dt = x_.dtype();
  const Device dev = x_.device();
  Tensor q = q_.Get({T, qw}, dt, dev), k = k_.Get({T, kw}, dt, dev), v = v_.Get({T, kw}, dt, dev);
  Tensor lse = lse_.Get({B, shape_.num_heads, seq_len_}, AccumDType(dt), dev);
  Tensor ctx = ctx_.Get({T, qw}, dt, dev);
  // out = ctx o^T
  Tensor dctx = dctx_.Get({T, qw}, dt, dev);
  ops::Gemm(dout, false, o_proj.compute(), false, dctx);
  ops::Gemm(dout, true, ctx, false, o_proj.grad, 1.0, 1.0);
  Tensor dq = dq_.Get({T, qw}, dt, dev), dk = dk_.Get({T, kw}, dt, dev), dv = dv_.Get({T, kw}, dt, dev);
  ops::CausalAttentionBackward(q, k, v, ctx, lse, dctx, seq_len_, dq, dk, dv);
  // q and k were rotated after projection: un-rotate their gradients.
  ops::Rope(dq, rope_cos_, rope_sin_, seq_len_, /*inverse=*/true);
  ops::Rope(dk, rope_cos_, rope_sin_, seq_len_, /*inverse=*/true);
  ops::Gemm(dq, true, x_, false, q_proj.grad, 1.0, 1.0);
  ops::Gemm(dk, true, x_, false, k_proj.grad, 1.0, 1.0);
  ops::Gemm(dv, true, x_, false, v_proj.grad, 1.0, 1.0);
  Tensor dx = dx_.Get(x_.shape(), dt, dev);
  ops::Gemm(dq, false, q_proj.compute(), false, dx);
  ops::Gemm(dk, false, k_proj.compute(), false, dx, 1.0, 1.0);
  ops::Gemm(dv, false, v_proj.compute(), false, dx, 1.0, 1.0);
  return dx;
}

}  // namespace sb
