// CUDA twins of every op in moe/ops/ops.h (same arguments and meaning; see
// there). Tensors are f32 or bf16; statistics, router math and losses are
// f32 (AccumDType). Each twin is tested against its CPU reference in
// moe/ops/cuda/cuda_ops_test.cc. Everything runs on the legacy default
// stream, in order; nothing here copies to the host except the ops that
// return a host value (SumSquares*, AllFinite, the router loss values).
// Plain declarations: no CUDA header is needed to include this.
#pragma once

#include <cstdint>
#include <vector>

#include "moe/core/tensor.h"

namespace sb::cuda {

void Fill(const Tensor& x, double value);
void Add(const Tensor& a, const Tensor& b, const Tensor& out);
void Mul(const Tensor& a, const Tensor& b, const Tensor& out);
void Axpy(double alpha, const Tensor& x, const Tensor& y);
void Scale(const Tensor& x, double alpha);
double SumSquares(const Tensor& x);
double SumSquaresOfAll(const std::vector<Tensor>& xs);
bool AllFinite(const Tensor& x);
void Convert(const Tensor& src, const Tensor& dst);

void Gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
          double alpha, double beta);
void GroupedGemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                 const std::vector<int64_t>& rows, double alpha, double beta);

void EmbeddingForward(const Tensor& ids, const Tensor& table, const Tensor& out);
void EmbeddingBackward(const Tensor& ids, const Tensor& dout, const Tensor& dtable);
void RmsNormForward(const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                    const Tensor& rstd);
void RmsNormBackward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                     const Tensor& dx, const Tensor& dw);
void Rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int seq_len, bool inverse);

// Attention: bf16 goes to cuDNN's fused SDPA (attention_cudnn.cc), f32 to
// the own kernels below, which also serve as the reference in tests.
// (Sizes of a call: moe/ops/attention_sizes.h; lse is f32 on the GPU.)
void CausalAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                            const Tensor& lse, const Tensor& out);
void CausalAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const Tensor& dout,
                             int seq_len, const Tensor& dq, const Tensor& dk, const Tensor& dv);
void ReferenceAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                               const Tensor& lse, const Tensor& out);
void ReferenceAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& out, const Tensor& lse, const Tensor& dout,
                                int seq_len, const Tensor& dq, const Tensor& dk, const Tensor& dv);
// cuDNN SDPA (bf16 only; deterministic backward). Fails loudly when cuDNN
// cannot be loaded or has no engine for the shape.
void CudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                           const Tensor& lse, const Tensor& out);
void CudnnAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                            const Tensor& lse, const Tensor& dout, int seq_len, const Tensor& dq,
                            const Tensor& dk, const Tensor& dv);
// Loads libcudnn.so.9 on first use; "" when loaded, else why not.
std::string CudnnLoadError();

void SwigluForward(const Tensor& gate, const Tensor& up, const Tensor& out);
void SwigluBackward(const Tensor& gate, const Tensor& up, const Tensor& dout,
                    const Tensor& dgate, const Tensor& dup);
void SoftmaxForward(const Tensor& logits, const Tensor& probs, const Tensor& lse);
void SoftmaxBackward(const Tensor& probs, const Tensor& dprobs, const Tensor& dlogits);
void LmHeadCrossEntropy(const Tensor& hidden, const Tensor& head, const Tensor& targets,
                        int64_t chunk_rows, double grad_scale, const Tensor& losses,
                        const Tensor& dhidden, const Tensor& dhead);

void RouterJitter(const Tensor& x, double eps, uint64_t key, const Tensor& noise,
                  const Tensor& out);
void TopK(const Tensor& probs, int k, const Tensor& expert_ids, const Tensor& topk_probs);
void RouterGates(const Tensor& topk_probs, bool normalize, const Tensor& gates);
void RouterGatesBackward(const Tensor& topk_probs, const Tensor& gates, const Tensor& dgates,
                         bool normalize, const Tensor& dtopk_probs);
void AssignSlots(const Tensor& expert_ids, int num_experts, int64_t capacity, const Tensor& slot,
                 const Tensor& routed, const Tensor& kept);
void PermutationIndices(const Tensor& expert_ids, const Tensor& slot, const Tensor& kept,
                        const Tensor& row_token, const Tensor& row_choice);
void ScatterTopK(const Tensor& expert_ids, const Tensor& dtopk_probs, const Tensor& dprobs);
double LoadBalancingLoss(const Tensor& probs, const Tensor& routed, int k);
void LoadBalancingLossBackward(const Tensor& routed, int k, double grad_scale,
                               const Tensor& dprobs);
double RouterZLoss(const Tensor& lse);
void RouterZLossBackward(const Tensor& lse, const Tensor& probs, double grad_scale,
                         const Tensor& dlogits);
double MeanEntropy(const Tensor& probs);
void RouterSummary(const Tensor& probs, const Tensor& lse, const Tensor& routed,
                   const Tensor& kept, int k, const Tensor& summary);

void GatherRows(const Tensor& src, const Tensor& index, const Tensor& dst, const Tensor* scale);
void ScatterAddRows(const Tensor& src, const Tensor& index, const Tensor& dst,
                    const Tensor* scale);
void GatherRowDot(const Tensor& a, const Tensor& index, const Tensor& b, const Tensor& out);
void PaddedRowIndex(const std::vector<int64_t>& rows, int64_t pad_rows, const Tensor& index);

}  // namespace sb::cuda
