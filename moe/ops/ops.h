// The device-neutral op API. Layers call only these functions; each one runs
// the CPU reference implementation (moe/ops/cpu/, OpenBLAS + OpenMP) or the
// CUDA one (moe/ops/cuda/) chosen by the device of its tensors. Float ops
// take f32 or f64 on CPU (f64 serves gradient checks) and f32 or bf16 on
// CUDA; statistics next to bf16 activations are f32 (AccumDType), and where a
// comment says so a CUDA op mixes bf16 inputs with f32 outputs or scales.
//
// Conventions: T = tokens in the micro-batch (batch * seq, row-major, token
// t = b * seq + s), D = d_model, H / Hkv = query / key-value heads, hd = head
// dim, E = experts, k = top-k, V = vocab. Index tensors are i32. Outputs are
// overwritten unless the comment says "+=" (gradients of parameters
// accumulate over micro-batches).
#pragma once

#include <cstdint>
#include <vector>

#include "moe/core/tensor.h"

namespace sb::ops {

// ---------------------------------------------------------------- elementwise
void Fill(const Tensor& x, double value);
void Copy(const Tensor& src, const Tensor& dst);  // same numel and dtype, any devices
void Add(const Tensor& a, const Tensor& b, const Tensor& out);  // out = a + b; out may alias
void Mul(const Tensor& a, const Tensor& b, const Tensor& out);  // out = a * b; out may alias
// y += alpha * x. CUDA: x and y may differ in float dtype (an f32 gradient
// added into bf16 activations).
void Axpy(double alpha, const Tensor& x, const Tensor& y);
void Scale(const Tensor& x, double alpha);                       // x *= alpha
// Sum of x^2 in f64, in a fixed order (the same bits on every run).
double SumSquares(const Tensor& x);
// Sum over all xs of their sums of squares (all on one device): on CUDA one
// device-to-host read for the lot (the global gradient norm).
double SumSquaresOfAll(const std::vector<Tensor>& xs);
bool AllFinite(const Tensor& x);
// Converts between float dtypes (f32 <-> f64 <-> bf16), same numel, both
// tensors on the same device (CUDA: f32 <-> bf16).
void Convert(const Tensor& src, const Tensor& dst);

// ----------------------------------------------------------------------- GEMM
// c = alpha * op(a) @ op(b) + beta * c, all 2-D row-major; op(x) = x^T when
// trans. Linear layers store HF's [out, in] weights: y = x @ W^T. CUDA: a and
// b bf16 with c f32 is allowed (weight gradients accumulate in f32).
void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha = 1.0, double beta = 0.0);
// The experts' GEMMs: G products in one call. Each of a, b, c is either a
// stack [G, r, w] (group g uses slice g) or a 2-D row-blocked matrix [N, w]
// (group g uses rows [off_g, off_g + rows[g]), off = exclusive cumsum of
// rows, N = sum(rows)); then c_g = alpha op(a_g) op(b_g) + beta c_g.
// Forward x_g W1_g^T is (rows, stack, rows); the weight gradient
// dW_g += dh_g^T x_g is (rows^T, rows, stack), where a group without rows
// leaves c_g as beta * c_g. CUDA: cuBLAS strided-batched GEMM when every
// group has the same rows (fixed capacity), grouped GEMM
// (cublasGemmGroupedBatchedEx) otherwise; dtypes as Gemm.
void GroupedGemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                 const std::vector<int64_t>& rows, double alpha = 1.0, double beta = 0.0);

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
// dx [T, D] (overwritten), dw [D] (+=; CUDA: f32 whatever x's dtype)
void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw);

// ----------------------------------------------------------------------- RoPE
// Hugging Face Llama's rotate-half convention: within each head, element i
// (< hd/2) pairs with i + hd/2 and both rotate by pos * theta^(-2i/hd).
// cos, sin [S, hd/2] tables for positions 0..S-1 (host-computed, f64 exact).
void RopeTables(int seq_len, int head_dim, double theta, const Tensor& cos, const Tensor& sin);
// In place on x [T, heads * hd]; token t has position t % seq_len. inverse
// applies the transpose rotation (the backward pass). CUDA: f32 tables may
// rotate bf16 x.
void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse);

// ------------------------------------------------------------------ attention
// Causal softmax(q k^T / sqrt(hd)) v with grouped-query attention: query head
// h reads key/value head h / (H / Hkv). FlashAttention-style (Dao et al.
// 2022): the [S, S] probabilities are never stored; the forward saves each
// query's log-sum-exp of its scaled scores and the backward recomputes the
// probabilities from it. CUDA: cuDNN's fused attention for bf16, an own
// kernel for f32 (docs/cuda.md).
// q [T, H*hd], k, v [T, Hkv*hd], out [T, H*hd], lse [B, H, S] (AccumDType)
void CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                            const Tensor& lse, const Tensor& out);
// out and lse from the forward; dq [T, H*hd], dk, dv [T, Hkv*hd], all overwritten.
void CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const Tensor& dout,
                             int seq_len, const Tensor& dq, const Tensor& dk, const Tensor& dv);

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
// The LM head and its cross-entropy in one op, over chunks of at most
// chunk_rows tokens, so that the [T, V] logits never exist whole (a chunk's
// [chunk_rows, V] logits live in a scratch buffer; f32 on CUDA):
//   logits = hidden head^T;  losses[t] = logsumexp(logits[t]) - logits[t, targets[t]]
// and losses[t] = 0 where targets[t] < 0 (ignored). When dhidden is defined
// the same pass adds the gradient of grad_scale * sum_t losses[t]:
//   dhidden  = grad_scale (softmax(logits) - onehot(targets)) head    (overwritten)
//   dhead   += grad_scale (softmax(logits) - onehot(targets))^T hidden
// Doing so while a chunk's logits are at hand spares backward a second
// logits GEMM (Liger Kernel's fused linear cross-entropy does the same).
// hidden [T, D], head [V, D], targets [T] i32, losses [T] (AccumDType),
// dhidden [T, D] (hidden's dtype), dhead [V, D] (CUDA: f32).
void LmHeadCrossEntropy(const Tensor& hidden, const Tensor& head, const Tensor& targets,
                        int64_t chunk_rows, double grad_scale, const Tensor& losses,
                        const Tensor& dhidden, const Tensor& dhead);

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
// P_e = mean_t probs[t, e] (Switch eq. 4, top-k choices).
double LoadBalancingLoss(const Tensor& probs, const Tensor& routed, int k);
// dprobs += grad_scale * dL/dprobs = grad_scale * E f_e / T.
void LoadBalancingLossBackward(const Tensor& routed, int k, double grad_scale,
                               const Tensor& dprobs);
// z-loss mean_t lse_t^2 (ST-MoE eq. 5).
double RouterZLoss(const Tensor& lse);
// dlogits += grad_scale * 2 lse_t probs[t, e] / T.
void RouterZLossBackward(const Tensor& lse, const Tensor& probs, double grad_scale,
                         const Tensor& dlogits);
// Mean over rows of the entropy of probs (nats).
double MeanEntropy(const Tensor& probs);
// A router's statistics in one f64 tensor on its device, so that a GPU
// returns them in one read: summary [3 + 2E] = {LoadBalancingLoss,
// RouterZLoss, MeanEntropy, routed[0..E), kept[0..E)}.
void RouterSummary(const Tensor& probs, const Tensor& lse, const Tensor& routed,
                   const Tensor& kept, int k, const Tensor& summary);

// ---------------------------------------------------------- row permutations
// dst[m] = src[index[m]] * (scale ? scale[m] : 1)   src [N, D], index [M], dst [M, D]
// (CUDA: scale may be f32 for bf16 rows, as the router's gates are.)
void GatherRows(const Tensor& src, const Tensor& index, const Tensor& dst,
                const Tensor* scale = nullptr);
// dst[index[m]] += src[m] * (scale ? scale[m] : 1)  src [M, D], dst [N, D] (+=)
// Each destination row adds its sources in increasing m (CUDA too, after a
// stable sort of index: no atomics, the same bits on every run).
void ScatterAddRows(const Tensor& src, const Tensor& index, const Tensor& dst,
                    const Tensor* scale = nullptr);
// Padded layout of row-blocked groups: row m of group g (groups of rows[g]
// rows in order, offsets off_g) goes to row g * pad_rows + (m - off_g).
// index [sum(rows)] i32. (The GPU writes it from kernel arguments: no copy.)
void PaddedRowIndex(const std::vector<int64_t>& rows, int64_t pad_rows, const Tensor& index);
// out[m] = a[index[m]] . b[m]                        a [N, D], b [M, D], out [M]
// (CUDA: out f32 for bf16 rows.)
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
