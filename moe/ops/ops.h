// The device-neutral op API. Layers call only these functions; each one runs
// the CPU reference implementation (moe/ops/cpu/, OpenBLAS + OpenMP) or the
// CUDA one (moe/ops/cuda/) chosen by the device of its tensors. Float ops
// take f32 or f64 on CPU (f64 serves gradient checks).
//
// Conventions: T = tokens in the micro-batch (batch * seq, row-major, token
// t = b * seq + s), D = d_model, H / Hkv = query / key-value heads, hd = head
// dim, E = experts, k = top-k, V = vocab. Index tensors are i32. Outputs are
// overwritten unless the comment says "+=" (gradients of parameters
// accumulate over micro-batches).
#pragma once

#include <cstdint>

#include "moe/core/tensor.h"

namespace sb::ops {

// ---------------------------------------------------------------- elementwise
void Fill(const Tensor& x, double value);
void Copy(const Tensor& src, const Tensor& dst);  // same numel and dtype, any devices
void Add(const Tensor& a, const Tensor& b, const Tensor& out);  // out = a + b; out may alias
void Mul(const Tensor& a, const Tensor& b, const Tensor& out);  // out = a * b; out may alias
void Axpy(double alpha, const Tensor& x, const Tensor& y);      // y += alpha * x
void Scale(const Tensor& x, double alpha);                       // x *= alpha
double SumSquares(const Tensor& x);                              // sum of x^2, in f64
bool AllFinite(const Tensor& x);
// Converts between float dtypes (f32 <-> f64 <-> bf16), same numel.
void Convert(const Tensor& src, const Tensor& dst);

// ----------------------------------------------------------------------- GEMM
// c = alpha * op(a) @ op(b) + beta * c, all 2-D row-major; op(x) = x^T when
// trans. Linear layers store HF's [out, in] weights: y = x @ W^T.
void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha = 1.0, double beta = 0.0);

// ------------------------------------------------------------------ embedding
// out[t] = table[ids[t]]        ids [T] i32, table [V, D], out [T, D]
void EmbeddingForward(const Tensor& ids, const Tensor& table, const Tensor& out);
// dtable[ids[t]] += dout[t]     dout [T, D], dtable [V, D] (+=)
void EmbeddingBackward(const Tensor& ids, const Tensor& dout, const Tensor& dtable);

// -------------------------------------------------------------------- RMSNorm
// y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps)   (Zhang & Sennrich 2019)
// x, y [T, D]; w [D]; rstd [T] (saved for backward)
void RmsNormForward(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                    const Tensor& rstd);
// dx [T, D] (overwritten), dw [D] (+=)
void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw);

// ----------------------------------------------------------------------- RoPE
// Hugging Face Llama's rotate-half convention: within each head, element i
// (< hd/2) pairs with i + hd/2 and both rotate by pos * theta^(-2i/hd).
// cos, sin [S, hd/2] tables for positions 0..S-1 (host-computed, f64 exact).
void RopeTables(int seq_len, int head_dim, double theta, const Tensor& cos, const Tensor& sin);
// In place on x [T, heads * hd]; token t has position t % seq_len. inverse
// applies the transpose rotation (the backward pass).
void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse);

// ------------------------------------------------------------------ attention
// Causal softmax(q k^T / sqrt(hd)) v with grouped-query attention: query head
// h reads key/value head h / (H / Hkv).
// q [T, H*hd], k, v [T, Hkv*hd], probs [B, H, S, S] (saved), out [T, H*hd]
void CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                            const Tensor& probs, const Tensor& out);
// dq [T, H*hd], dk, dv [T, Hkv*hd], all overwritten.
void CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& probs, const Tensor& dout, int seq_len,
                             const Tensor& dq, const Tensor& dk, const Tensor& dv);

// --------------------------------------------------------------------- SwiGLU
// out = silu(gate) * up         gate, up, out [N, F]  (Shazeer 2020)
void SwigluForward(const Tensor& gate, const Tensor& up, const Tensor& out);
// dgate, dup [N, F] overwritten; dout may alias dup.
void SwigluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                    const Tensor& dgate, const Tensor& dup);

// ------------------------------------------------------------ softmax, losses
// probs = softmax(logits) by row; lse = logsumexp by row.  logits, probs [T, E]; lse [T]
void SoftmaxForward(const Tensor& logits, const Tensor& probs, const Tensor& lse);
// dlogits (+=) = probs * (dprobs - sum(probs * dprobs))      [T, E]
void SoftmaxBackward(const Tensor& probs, const Tensor& dprobs, const Tensor& dlogits);
// Cross-entropy split in two passes so that the logits survive the forward
// (the `forward` command writes them) while backward needs no [T, V] buffer.
// Forward: lse[t] = logsumexp(logits[t]); losses[t] = lse[t] - logits[t, targets[t]].
// Targets < 0 are ignored (loss 0, gradient 0).   logits [T, V], targets [T] i32, losses, lse [T]
void CrossEntropyForward(const Tensor& logits, const Tensor& targets, const Tensor& losses,
                         const Tensor& lse);
// dlogits = grad_scale * (softmax(logits) - onehot(targets)); dlogits may alias logits.
void CrossEntropyBackward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                          double grad_scale, const Tensor& dlogits);

// -------------------------------------------------------------------- routing
// Multiplies by U(1 - eps, 1 + eps) drawn from counter stream `key` at index
// (row * D + col): out = x * noise, noise [T, D] saved for backward.
void RouterJitter(const Tensor& x, double eps, uint64_t key, const Tensor& noise,
                  const Tensor& out);
// The k largest probs per row in descending order; ties go to the lower id.
// probs [T, E]; expert_ids [T, k] i32; topk_probs [T, k]
void TopK(const Tensor& probs, int k, const Tensor& expert_ids, const Tensor& topk_probs);
// gates = topk_probs, or topk_probs / sum(topk_probs) by row when normalize.
void RouterGates(const Tensor& topk_probs, bool normalize, const Tensor& gates);
// dtopk_probs (overwritten) from dgates.
void RouterGatesBackward(const Tensor& topk_probs, const Tensor& gates, const Tensor& dgates,
                         bool normalize, const Tensor& dtopk_probs);
// Capacity assignment (GShard / ST-MoE): slots fill by choice rank first (all
// first choices, then all second choices, ...) and by token order within a
// rank. slot[t, r] = position in expert_ids[t, r]'s buffer, or -1 if the
// expert was already full (capacity < 0: never full, dropless).
// expert_ids, slot [T, k] i32; routed, kept [E] i32 (choices before / after dropping)
void AssignSlots(const Tensor& expert_ids, int num_experts, int64_t capacity, const Tensor& slot,
                 const Tensor& routed, const Tensor& kept);
// The permutation from tokens to expert-grouped rows: kept choice (t, r) of
// expert e becomes row offset[e] + slot[t, r], offset = exclusive cumsum of
// kept. row_token [N] i32 = t, row_choice [N] i32 = t * k + r, N = sum(kept).
void PermutationIndices(const Tensor& expert_ids, const Tensor& slot, const Tensor& kept,
                        const Tensor& row_token, const Tensor& row_choice);
// dprobs[t, expert_ids[t, r]] += dtopk_probs[t, r]            dprobs [T, E]
void ScatterTopK(const Tensor& expert_ids, const Tensor& dtopk_probs, const Tensor& dprobs);
// Load-balancing loss E * sum_e f_e * P_e with f_e = routed_e / (T k) and
// P_e = mean_t probs[t, e] (Switch eq. 4, top-k choices); returns its value and,
// when dprobs is defined, adds grad_scale * dL/dprobs = grad_scale * E f_e / T.
double LoadBalancingLoss(const Tensor& probs, const Tensor& routed, int k, double grad_scale,
                         const Tensor& dprobs);
// z-loss mean_t lse_t^2 (ST-MoE eq. 5); returns its value and, when dlogits is
// defined, adds grad_scale * 2 lse_t probs[t, e] / T.
double RouterZLoss(const Tensor& lse, const Tensor& probs, double grad_scale,
                   const Tensor& dlogits);
// Mean over rows of the entropy of probs (nats).
double MeanEntropy(const Tensor& probs);

// ---------------------------------------------------------- row permutations
// dst[m] = src[index[m]] * (scale ? scale[m] : 1)   src [N, D], index [M], dst [M, D]
void GatherRows(const Tensor& src, const Tensor& index, const Tensor& dst,
                const Tensor* scale = nullptr);
// dst[index[m]] += src[m] * (scale ? scale[m] : 1)  src [M, D], dst [N, D] (+=)
void ScatterAddRows(const Tensor& src, const Tensor& index, const Tensor& dst,
                    const Tensor* scale = nullptr);
// out[m] = a[index[m]] . b[m]                        a [N, D], b [M, D], out [M]
void GatherRowDot(const Tensor& a, const Tensor& index, const Tensor& b, const Tensor& out);

// ----------------------------------------------------------- routing variants
// Routing variants from the MoE literature (docs/moe_semantics.md, "Routing
// variants"). CPU only for now: on CUDA tensors they fail loudly (SB_CPU_ONLY).

// Top-k of probs + bias for the choice only (auxiliary-loss-free balancing,
// Wang et al. 2024 / DeepSeek-V3); topk_probs are the chosen experts'
// unbiased probs. Ties go to the lower id.
// probs [T, E]; bias [E]; expert_ids [T, k] i32; topk_probs [T, k]
void BiasedTopK(const Tensor& probs, const Tensor& bias, int k, const Tensor& expert_ids,
                const Tensor& topk_probs);
// GShard's random second expert (Lepikhin et al. 2020, algorithm 1):
// active[t, 0] = 1; active[t, 1] = 1 iff u_t < 2 * p2 / (p1 + p2), with u_t
// = U(0, 1) at index t of counter stream `key`.   topk_probs [T, 2]; active [T, 2] i32
void SampleSecondExpert(const Tensor& topk_probs, uint64_t key, const Tensor& active);
// Batch-prioritized routing (Riquelme et al. 2021, V-MoE): the tokens by
// descending topk_probs[t, 0] (ties: lower token first).
// topk_probs [T, k]; token_order [T] i32
void PriorityOrder(const Tensor& topk_probs, const Tensor& token_order);
// AssignSlots with a priority and a mask: slots fill by choice rank first and,
// within a rank, in token_order (null: token order 0..T-1); a choice whose
// active flag is 0 (active null: all active) takes no slot (-1) and is not
// counted in routed.   token_order [T] i32; active [T, k] i32; others as AssignSlots
void AssignSlotsOrdered(const Tensor& expert_ids, const Tensor* token_order,
                        const Tensor* active, int num_experts, int64_t capacity,
                        const Tensor& slot, const Tensor& routed, const Tensor& kept);
// Expert-choice routing (Zhou et al. 2022): expert e takes the min(capacity,
// T) tokens with the largest probs[:, e] (ties: lower token first).
// expert_ids [T, E] i32 = e in column e; slot [T, E] i32 = the token's rank
// in e's choice, or -1; kept [E] i32 = tokens each expert took.
void ExpertChoice(const Tensor& probs, int64_t capacity, const Tensor& expert_ids,
                  const Tensor& slot, const Tensor& kept);
// Noisy top-k gating (Shazeer et al. 2017, eq. 4): noise_std =
// softplus(noise_logits); normal = N(0, 1) at index t * E + e of stream
// `key` when sample, else 0; noisy = clean + normal * noise_std.
// clean, noise_logits, normal, noise_std, noisy [T, E]
void NoisyLogits(const Tensor& clean, const Tensor& noise_logits, uint64_t key, bool sample,
                 const Tensor& normal, const Tensor& noise_std, const Tensor& noisy);
// Its backward: dclean += dnoisy; dnoise_logits (overwritten) =
// (dnoise_std + dnoisy * normal) * sigmoid(noise_logits).  All [T, E].
void NoisyLogitsBackward(const Tensor& noise_logits, const Tensor& normal, const Tensor& dnoisy,
                         const Tensor& dnoise_std, const Tensor& dclean,
                         const Tensor& dnoise_logits);
// Shazeer et al. 2017 appendix A: CV(Importance)^2 + CV(Load)^2, where
// Importance_e = sum of the gates of choices of e, Load_e = sum_t
// Phi((clean[t, e] - kth_excluding(noisy[t], k, e)) / noise_std[t, e]), and
// CV(v)^2 = var(v) / (mean(v)^2 + 1e-10) (population variance, as
// tensor2tensor's cv_squared). kth_excluding is the k-th largest noisy logit
// of the token without e's own (ties: lower id ranks first). Returns the
// value; when grad_scale != 0 adds grad_scale * dL/d(input) into dgates
// [T, k], dclean, dnoise_std and dnoisy [T, E] (the threshold's gradient).
// gates, expert_ids [T, k]; clean, noisy, noise_std [T, E]
double NoisyTopKBalanceLoss(const Tensor& gates, const Tensor& expert_ids, const Tensor& clean,
                            const Tensor& noisy, const Tensor& noise_std, double grad_scale,
                            const Tensor& dgates, const Tensor& dclean, const Tensor& dnoise_std,
                            const Tensor& dnoisy);
// Per-row keys of expert dropout: row n (token t = row_choice[n] / k, expert
// e = expert_ids[row_choice[n]]) gets key StreamKey({base_key, t, e}), written
// as four 16-bit chunks (exact in f32 and f64) so that it can travel with the
// row through the token dispatcher.   expert_ids [T, k] i32; row_choice [N] i32; keys [N, 4]
void ExpertRowKeys(const Tensor& expert_ids, const Tensor& row_choice, uint64_t base_key,
                   const Tensor& keys);
// Inverted dropout in place, keyed by row: x[n, f] *= (U(key_n, f) >= rate) / (1 - rate).
// keys [N, 4] (ExpertRowKeys); x [N, F]. Forward and backward apply the same mask.
void KeyedDropout(const Tensor& keys, double rate, const Tensor& x);

}  // namespace sb::ops
