// CUDA: the router's ops in f32 (ST-MoE's selective precision): jitter,
// top-k and gates (one thread per token, the per-row code the CPU runs:
// moe/ops/kernels/routing_rows.h), capacity assignment (one block per
// expert scanning the choices in priority order with CUB's BlockScan), the
// permutation, and the router losses with deterministic reductions.
#include <cub/block/block_scan.cuh>

#include "moe/core/rng.h"
#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"
#include "moe/ops/kernels/routing_rows.h"

namespace sb::cuda {
namespace {

constexpr int kScanThreads = 512;

void CheckF32(const Tensor& t, const char* what) {
  SB_CHECK(t.dtype() == DType::kF32 && t.device() == Device::kCuda)
      << what << ": the router computes in f32 on the GPU, got " << t.ToString();
}
void CheckI32(const Tensor& t, const char* what) {
  SB_CHECK(t.dtype() == DType::kI32 && t.device() == Device::kCuda) << what << ": " << t.ToString();
}

// noise = 1 - eps + 2 eps u in f64 with explicit rounding (no fused
// multiply-add), so that every bit matches the CPU's draw.
__global__ void JitterKernel(const float* x, double eps, uint64_t key, float* noise, float* out,
                             int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const double u = UniformAt(key, static_cast<uint64_t>(i));
    const double v = __dadd_rn(__dsub_rn(1.0, eps), __dmul_rn(__dmul_rn(2.0, eps), u));
    const float nv = __double2float_rn(v);
    noise[i] = nv;
    out[i] = __fmul_rn(x[i], nv);
  }
}

__global__ void TopKKernel(const float* probs, int64_t rows, int num_experts, int k, int32_t* ids,
                           float* vals) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < rows;
       t += int64_t{gridDim.x} * blockDim.x) {
    ops::kernels::TopKRow(probs + t * num_experts, num_experts, k, ids + t * k, vals + t * k);
  }
}

__global__ void GatesKernel(const float* p, int64_t rows, int k, bool normalize, float* gates) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < rows;
       t += int64_t{gridDim.x} * blockDim.x) {
    ops::kernels::GatesRow(p + t * k, k, normalize, gates + t * k);
  }
}

__global__ void GatesBackwardKernel(const float* p, const float* g, const float* dg, int64_t rows,
                                    int k, bool normalize, float* dp) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < rows;
       t += int64_t{gridDim.x} * blockDim.x) {
    ops::kernels::GatesBackwardRow(p + t * k, g + t * k, dg + t * k, k, normalize, dp + t * k);
  }
}

// Block e walks the T*k choices in priority order i = r * T + t (all first
// choices, then all second choices, ...; DESIGN.md) in tiles: a choice of
// expert e takes slot = (choices of e before it), dropped (-1) from
// `capacity` on. routed[e] counts all of them, kept[e] the slotted ones.
__global__ void AssignSlotsKernel(const int32_t* ids, int64_t rows, int k, int64_t capacity,
                                  int32_t* slot, int32_t* routed, int32_t* kept) {
  using BlockScan = cub::BlockScan<int, kScanThreads>;
  __shared__ typename BlockScan::TempStorage temp;
  const int e = blockIdx.x;
  const int64_t n = rows * k;
  int64_t running = 0;
  for (int64_t base = 0; base < n; base += kScanThreads) {
    const int64_t i = base + threadIdx.x;
    int64_t at = 0;
    int flag = 0;
    if (i < n) {
      at = (i % rows) * k + i / rows;  // choice (t, r) of priority i
      flag = ids[at] == e ? 1 : 0;
    }
    int offset = 0, tile_total = 0;
    BlockScan(temp).ExclusiveSum(flag, offset, tile_total);
    if (flag) {
      const int64_t s = running + offset;
      slot[at] = capacity < 0 || s < capacity ? static_cast<int32_t>(s) : -1;
    }
    running += tile_total;
    __syncthreads();  // temp is reused by the next tile
  }
  if (threadIdx.x == 0) {
    routed[e] = static_cast<int32_t>(running);
    kept[e] = static_cast<int32_t>(capacity < 0 || running < capacity ? running : capacity);
  }
}

// offsets[e] = sum of kept[0..e): E is small, one thread.
__global__ void ExclusiveOffsetsKernel(const int32_t* kept, int num_experts, int64_t* offsets) {
  int64_t acc = 0;
  for (int e = 0; e < num_experts; ++e) {
    offsets[e] = acc;
    acc += kept[e];
  }
}

__global__ void PermutationKernel(const int32_t* ids, const int32_t* slot, const int64_t* offsets,
                                  int64_t choices, int k, int32_t* row_token, int32_t* row_choice) {
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < choices;
       c += int64_t{gridDim.x} * blockDim.x) {
    if (slot[c] < 0) continue;
    const int64_t row = offsets[ids[c]] + slot[c];
    row_token[row] = static_cast<int32_t>(c / k);
    row_choice[row] = static_cast<int32_t>(c);
  }
}

// The k experts of a token differ, so no two writes of a row collide.
__global__ void ScatterTopKKernel(const int32_t* ids, const float* src, float* dst, int64_t rows,
                                  int k, int num_experts) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < rows;
       t += int64_t{gridDim.x} * blockDim.x) {
    for (int r = 0; r < k; ++r) dst[t * num_experts + ids[t * k + r]] += src[t * k + r];
  }
}

__global__ void LoadBalancingBackwardKernel(const int32_t* routed, int64_t rows, int k,
                                            int num_experts, double grad_scale, float* dprobs) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * num_experts;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int e = static_cast<int>(i % num_experts);
    const double f = static_cast<double>(routed[e]) / static_cast<double>(rows * k);
    dprobs[i] += static_cast<float>(grad_scale * num_experts * f / static_cast<double>(rows));
  }
}

__global__ void ZLossBackwardKernel(const float* lse, const float* probs, int64_t rows,
                                    int64_t num_experts, double grad_scale, float* dlogits) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * num_experts;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float c = static_cast<float>(grad_scale * 2.0 * lse[i / num_experts] / static_cast<double>(rows));
    dlogits[i] += c * probs[i];
  }
}

struct ProbAt {
  const float* p;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return p[r * cols + c]; }
};
struct SquareAt {
  const float* x;
  __device__ double operator()(int64_t i) const { return static_cast<double>(x[i]) * x[i]; }
};
struct NegPLogP {
  const float* p;
  __device__ double operator()(int64_t i) const {
    const double v = p[i];
    return v > 0 ? -v * log(v) : 0.0;
  }
};

// summary = {aux, z, entropy, routed..., kept...} from the reduced pieces.
__global__ void SummaryKernel(const double* column_sums, const double* z_sum, const double* ent_sum,
                              const int32_t* routed, const int32_t* kept, int64_t rows, int k,
                              int num_experts, double* summary) {
  double aux = 0.0;
  for (int e = 0; e < num_experts; ++e) {
    const double f = static_cast<double>(routed[e]) / static_cast<double>(rows * k);
    aux += f * column_sums[e] / static_cast<double>(rows);
    summary[3 + e] = routed[e];
    summary[3 + num_experts + e] = kept != nullptr ? kept[e] : 0;
  }
  summary[0] = rows > 0 ? aux * num_experts : 0.0;
  summary[1] = rows > 0 ? *z_sum / static_cast<double>(rows) : 0.0;
  summary[2] = rows > 0 ? *ent_sum / static_cast<double>(rows) : 0.0;
}

// The three statistics into summary (device) from probs, lse and the counts.
void Summarize(const Tensor& probs, const Tensor& lse, const Tensor& routed, const Tensor* kept,
               int k, double* summary) {
  const int64_t rows = probs.dim(0), num_experts = probs.dim(1);
  Tensor column_sums = Tensor::Empty({num_experts}, DType::kF64, Device::kCuda);
  Tensor sums = Tensor::Zeros({2}, DType::kF64, Device::kCuda);  // z, entropy
  ColumnSums(rows, num_experts, ProbAt{Ptr<const float>(probs), num_experts},
             Ptr<double>(column_sums), false);
  if (lse.defined()) DeviceSum(rows, SquareAt{Ptr<const float>(lse)}, Ptr<double>(sums));
  DeviceSum(rows * num_experts, NegPLogP{Ptr<const float>(probs)}, Ptr<double>(sums) + 1);
  SummaryKernel<<<1, 1, 0, kStream>>>(Ptr<const double>(column_sums), Ptr<const double>(sums),
                                      Ptr<const double>(sums) + 1, Ptr<const int32_t>(routed),
                                      kept ? Ptr<const int32_t>(*kept) : nullptr, rows, k,
                                      static_cast<int>(num_experts), summary);
  CheckLaunch();
}

}  // namespace

void RouterJitter(const Tensor& x, double eps, uint64_t key, const Tensor& noise, const Tensor& out) {
  CheckF32(x, "RouterJitter x");
  CheckF32(noise, "RouterJitter noise");
  CheckF32(out, "RouterJitter out");
  const int64_t n = x.numel();
  if (n == 0) return;
  JitterKernel<<<Blocks(n), kThreads, 0, kStream>>>(Ptr<const float>(x), eps, key, Ptr<float>(noise),
                                                    Ptr<float>(out), n);
  CheckLaunch();
}

void TopK(const Tensor& probs, int k, const Tensor& expert_ids, const Tensor& topk_probs) {
  CheckF32(probs, "TopK probs");
  CheckI32(expert_ids, "TopK expert_ids");
  const int64_t rows = probs.dim(0), num_experts = probs.dim(1);
  SB_CHECK(k >= 1 && k <= num_experts && expert_ids.numel() == rows * k && topk_probs.numel() == rows * k)
      << "TopK k " << k << " of " << probs.ToString();
  if (rows == 0) return;
  TopKKernel<<<Blocks(rows), kThreads, 0, kStream>>>(Ptr<const float>(probs), rows,
                                                     static_cast<int>(num_experts), k,
                                                     Ptr<int32_t>(expert_ids), Ptr<float>(topk_probs));
  CheckLaunch();
}

void RouterGates(const Tensor& topk_probs, bool normalize, const Tensor& gates) {
  CheckF32(topk_probs, "RouterGates");
  CheckF32(gates, "RouterGates");
  const int64_t rows = topk_probs.dim(0), k = topk_probs.dim(1);
  if (rows == 0) return;
  GatesKernel<<<Blocks(rows), kThreads, 0, kStream>>>(Ptr<const float>(topk_probs), rows,
                                                      static_cast<int>(k), normalize, Ptr<float>(gates));
  CheckLaunch();
}

void RouterGatesBackward(const Tensor& topk_probs, const Tensor& gates, const Tensor& dgates,
                         bool normalize, const Tensor& dtopk_probs) {
  CheckF32(dgates, "RouterGatesBackward dgates");
  CheckF32(dtopk_probs, "RouterGatesBackward dtopk");
  const int64_t rows = topk_probs.dim(0), k = topk_probs.dim(1);
  if (rows == 0) return;
  GatesBackwardKernel<<<Blocks(rows), kThreads, 0, kStream>>>(
      Ptr<const float>(topk_probs), Ptr<const float>(gates), Ptr<const float>(dgates), rows,
      static_cast<int>(k), normalize, Ptr<float>(dtopk_probs));
  CheckLaunch();
}

void AssignSlots(const Tensor& expert_ids, int num_experts, int64_t capacity, const Tensor& slot,
                 const Tensor& routed, const Tensor& kept) {
  CheckI32(expert_ids, "AssignSlots expert_ids");
  CheckI32(slot, "AssignSlots slot");
  const int64_t rows = expert_ids.dim(0), k = expert_ids.dim(1);
  SB_CHECK(slot.shape() == expert_ids.shape() && routed.numel() == num_experts &&
           kept.numel() == num_experts && rows * k <= INT32_MAX)
      << "AssignSlots " << expert_ids.ToString() << " " << slot.ToString();
  AssignSlotsKernel<<<static_cast<unsigned>(num_experts), kScanThreads, 0, kStream>>>(
      Ptr<const int32_t>(expert_ids), rows, static_cast<int>(k), capacity, Ptr<int32_t>(slot),
      Ptr<int32_t>(routed), Ptr<int32_t>(kept));
  CheckLaunch();
}

void PermutationIndices(const Tensor& expert_ids, const Tensor& slot, const Tensor& kept,
                        const Tensor& row_token, const Tensor& row_choice) {
  CheckI32(expert_ids, "PermutationIndices expert_ids");
  const int64_t rows = expert_ids.dim(0), k = expert_ids.dim(1), num_experts = kept.numel();
  SB_CHECK(row_token.numel() == row_choice.numel()) << "PermutationIndices outputs";
  Tensor offsets = Tensor::Empty({num_experts}, DType::kI64, Device::kCuda);
  ExclusiveOffsetsKernel<<<1, 1, 0, kStream>>>(Ptr<const int32_t>(kept), static_cast<int>(num_experts),
                                               Ptr<int64_t>(offsets));
  if (rows * k > 0) {
    PermutationKernel<<<Blocks(rows * k), kThreads, 0, kStream>>>(
        Ptr<const int32_t>(expert_ids), Ptr<const int32_t>(slot), Ptr<const int64_t>(offsets),
        rows * k, static_cast<int>(k), Ptr<int32_t>(row_token), Ptr<int32_t>(row_choice));
  }
  CheckLaunch();
}

void ScatterTopK(const Tensor& expert_ids, const Tensor& dtopk_probs, const Tensor& dprobs) {
  CheckF32(dprobs, "ScatterTopK");
  const int64_t rows = dprobs.dim(0), num_experts = dprobs.dim(1), k = expert_ids.dim(1);
  if (rows == 0) return;
  ScatterTopKKernel<<<Blocks(rows), kThreads, 0, kStream>>>(
      Ptr<const int32_t>(expert_ids), Ptr<const float>(dtopk_probs), Ptr<float>(dprobs), rows,
      static_cast<int>(k), static_cast<int>(num_experts));
  CheckLaunch();
}

double LoadBalancingLoss(const Tensor& probs, const Tensor& routed, int k) {
  CheckF32(probs, "LoadBalancingLoss");
  Tensor summary = Tensor::Empty({3 + 2 * probs.dim(1)}, DType::kF64, Device::kCuda);
  Summarize(probs, Tensor(), routed, nullptr, k, Ptr<double>(summary));
  return ReadDouble(Ptr<const double>(summary));
}

void LoadBalancingLossBackward(const Tensor& routed, int k, double grad_scale, const Tensor& dprobs) {
  CheckF32(dprobs, "LoadBalancingLossBackward");
  const int64_t rows = dprobs.dim(0), num_experts = dprobs.dim(1);
  if (rows == 0) return;
  LoadBalancingBackwardKernel<<<Blocks(rows * num_experts), kThreads, 0, kStream>>>(
      Ptr<const int32_t>(routed), rows, k, static_cast<int>(num_experts), grad_scale, Ptr<float>(dprobs));
  CheckLaunch();
}

double RouterZLoss(const Tensor& lse) {
  CheckF32(lse, "RouterZLoss");
  Tensor sum = Tensor::Empty({1}, DType::kF64, Device::kCuda);
  DeviceSum(lse.numel(), SquareAt{Ptr<const float>(lse)}, Ptr<double>(sum));
  return lse.numel() ? ReadDouble(Ptr<const double>(sum)) / lse.numel() : 0.0;
}

void RouterZLossBackward(const Tensor& lse, const Tensor& probs, double grad_scale,
                         const Tensor& dlogits) {
  CheckF32(dlogits, "RouterZLossBackward");
  const int64_t rows = probs.dim(0), num_experts = probs.dim(1);
  if (rows == 0) return;
  ZLossBackwardKernel<<<Blocks(rows * num_experts), kThreads, 0, kStream>>>(
      Ptr<const float>(lse), Ptr<const float>(probs), rows, num_experts, grad_scale, Ptr<float>(dlogits));
  CheckLaunch();
}

double MeanEntropy(const Tensor& probs) {
  CheckF32(probs, "MeanEntropy");
  Tensor sum = Tensor::Empty({1}, DType::kF64, Device::kCuda);
  DeviceSum(probs.numel(), NegPLogP{Ptr<const float>(probs)}, Ptr<double>(sum));
  return probs.dim(0) ? ReadDouble(Ptr<const double>(sum)) / probs.dim(0) : 0.0;
}

void RouterSummary(const Tensor& probs, const Tensor& lse, const Tensor& routed, const Tensor& kept,
                   int k, const Tensor& summary) {
  CheckF32(probs, "RouterSummary probs");
  SB_CHECK(summary.dtype() == DType::kF64 && summary.numel() == 3 + 2 * probs.dim(1) &&
           summary.device() == Device::kCuda)
      << "RouterSummary summary " << summary.ToString();
  Summarize(probs, lse, routed, &kept, k, Ptr<double>(summary));
}

}  // namespace sb::cuda
