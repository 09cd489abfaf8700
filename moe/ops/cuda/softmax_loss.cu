// CUDA: the router's row softmax and the LM head fused with its
// cross-entropy over chunks of tokens (logits in f32, one block per row,
// fixed reduction trees).
#include <cmath>

#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {

constexpr int kRowThreads = 64;   // softmax over E experts
constexpr int kVocabThreads = 512;  // cross-entropy over V logits

template <typename T>
__global__ void SoftmaxKernel(const T* logits, T* probs, T* lse, int64_t cols) {
  __shared__ float scratch[kThreads];
  const T* x = logits + blockIdx.x * cols;
  T* p = probs + blockIdx.x * cols;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, Load(x, j));
  mx = BlockMax(mx, scratch);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += expf(Load(x, j) - mx);
  sum = BlockSum(sum, scratch);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) Store(p, j, expf(Load(x, j) - mx) / sum);
  if (threadIdx.x == 0) Store(lse, blockIdx.x, mx + logf(sum));
}

template <typename T>
__global__ void SoftmaxBackwardKernel(const T* probs, const T* dprobs, T* dlogits, int64_t cols) {
  __shared__ float scratch[kThreads];
  const int64_t base = blockIdx.x * cols;
  float dot = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) dot += Load(probs, base + j) * Load(dprobs, base + j);
  dot = BlockSum(dot, scratch);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float p = Load(probs, base + j);
    Store(dlogits, base + j, Load(dlogits, base + j) + p * (Load(dprobs, base + j) - dot));
  }
}

// (max, sum of exp(x - max)) pairs merged with a fixed tree.
__device__ void MergeMaxSum(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  const float mx = fmaxf(m, m2);
  s = s * expf(m - mx) + s2 * expf(m2 - mx);
  m = mx;
}

// One block per token of the chunk: loss from its f32 logits row and, with
// dlogits, the row's gradient scale * (softmax - onehot) (0 when ignored).
template <typename G>
__global__ void CrossEntropyRowKernel(const float* logits, const int32_t* targets, float* losses,
                                      G* dlogits, int64_t vocab, float scale) {
  __shared__ float sm[kVocabThreads], ss[kVocabThreads];
  const int64_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) MergeMaxSum(m, s, x[j], 1.f);
  sm[threadIdx.x] = m;
  ss[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      float a = sm[threadIdx.x], b = ss[threadIdx.x];
      MergeMaxSum(a, b, sm[threadIdx.x + w], ss[threadIdx.x + w]);
      sm[threadIdx.x] = a;
      ss[threadIdx.x] = b;
    }
    __syncthreads();
  }
  const float lse = sm[0] + logf(ss[0]);
  const int32_t target = targets[row];
  if (threadIdx.x == 0) losses[row] = target < 0 ? 0.f : lse - x[target];
  if (dlogits == nullptr) return;
  // dlogits may alias logits (f32): the target's logit is read above before
  // any thread overwrites the row.
  __syncthreads();
  const float st = target < 0 ? 0.f : scale;
  G* d = dlogits + row * vocab;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    Store(d, j, st * expf(x[j] - lse) - (j == target ? st : 0.f));
  }
}

}  // namespace

void SoftmaxForward(const Tensor& logits, const Tensor& probs, const Tensor& lse) {
  SB_CHECK(logits.dtype() == probs.dtype() && logits.dtype() == lse.dtype() &&
           logits.shape() == probs.shape() && lse.numel() == logits.dim(0))
      << "SoftmaxForward " << logits.ToString() << " " << probs.ToString() << " " << lse.ToString();
  const int64_t rows = logits.dim(0), cols = logits.dim(1);
  if (rows == 0) return;
  ByDType(logits.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    SoftmaxKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, kStream>>>(
        Ptr<const T>(logits), Ptr<T>(probs), Ptr<T>(lse), cols);
  });
  CheckLaunch();
}

void SoftmaxBackward(const Tensor& probs, const Tensor& dprobs, const Tensor& dlogits) {
  SB_CHECK(probs.dtype() == dprobs.dtype() && probs.dtype() == dlogits.dtype() &&
           probs.shape() == dprobs.shape() && probs.shape() == dlogits.shape())
      << "SoftmaxBackward " << probs.ToString() << " " << dprobs.ToString() << " " << dlogits.ToString();
  const int64_t rows = probs.dim(0), cols = probs.dim(1);
  if (rows == 0) return;
  ByDType(probs.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    SoftmaxBackwardKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, kStream>>>(
        Ptr<const T>(probs), Ptr<const T>(dprobs), Ptr<T>(dlogits), cols);
  });
  CheckLaunch();
}

void LmHeadCrossEntropy(const Tensor& hidden, const Tensor& head, const Tensor& targets,
                        int64_t chunk_rows, double grad_scale, const Tensor& losses,
                        const Tensor& dhidden, const Tensor& dhead) {
  const int64_t rows = hidden.dim(0), vocab = head.dim(0);
  const bool grad = dhidden.defined();
  SB_CHECK(head.dtype() == hidden.dtype() && head.dim(1) == hidden.dim(1) &&
           targets.dtype() == DType::kI32 && targets.numel() == rows &&
           losses.dtype() == DType::kF32 && losses.numel() == rows && chunk_rows >= 1)
      << "LmHeadCrossEntropy hidden " << hidden.ToString() << " head " << head.ToString()
      << " targets " << targets.ToString() << " losses " << losses.ToString()
      << " (losses are f32 on the GPU)";
  if (grad) {
    SB_CHECK(dhidden.dtype() == hidden.dtype() && dhidden.shape() == hidden.shape() &&
             dhead.dtype() == DType::kF32 && dhead.shape() == head.shape())
        << "LmHeadCrossEntropy dhidden " << dhidden.ToString() << " dhead " << dhead.ToString();
  }
  if (rows == 0) return;
  const int64_t chunk = std::min(chunk_rows, rows);
  // One chunk's f32 logits, and its gradient in the GEMM dtype (in place
  // for f32; a bf16 buffer next to bf16 activations).
  Tensor logits = Tensor::Empty({chunk, vocab}, DType::kF32, Device::kCuda);
  Tensor dlogits;
  if (grad) {
    dlogits = hidden.dtype() == DType::kF32 ? logits
                                             : Tensor::Empty({chunk, vocab}, hidden.dtype(), Device::kCuda);
  }
  for (int64_t c0 = 0; c0 < rows; c0 += chunk) {
    const int64_t n = std::min(chunk, rows - c0);
    const Tensor lg = logits.Rows(0, n), h = hidden.Rows(c0, c0 + n);
    Gemm(h, false, head, true, lg, 1.0, 0.0);
    const Tensor dl = grad ? dlogits.Rows(0, n) : Tensor();
    ByDType(grad ? dl.dtype() : DType::kF32, [&](auto tag) {
      using G = SB_TYPE_OF(tag);
      CrossEntropyRowKernel<<<static_cast<unsigned>(n), kVocabThreads, 0, kStream>>>(
          Ptr<const float>(lg), Ptr<const int32_t>(targets) + c0, Ptr<float>(losses) + c0,
          grad ? Ptr<G>(dl) : static_cast<G*>(nullptr), vocab, static_cast<float>(grad_scale));
    });
    CheckLaunch();
    if (grad) {
      Gemm(dl, true, h, false, dhead, 1.0, 1.0);
      Gemm(dl, false, head, false, dhidden.Rows(c0, c0 + n), 1.0, 0.0);
    }
  }
}

}  // namespace sb::cuda
