// CUDA: row gathers and the deterministic scatter-add. ScatterAddRows sorts
// the destination indices with CUB's stable radix sort, then each
// destination row adds its sources in increasing source order (as the CPU
// reference does): no atomics, so the same bits on every run, which the
// embedding gradient and the MoE combine need for bitwise resume.
#include <cub/device/device_radix_sort.cuh>

#include "moe/ops/cuda/cuda_common.cuh"
#include "moe/ops/cuda/cuda_ops.h"

namespace sb::cuda {
namespace {

template <typename T, typename S>
__global__ void GatherRowsKernel(const T* src, const int32_t* index, T* dst, const S* scale,
                                 int64_t m, int64_t d) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < m * d;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / d, j = i % d;
    const float c = scale ? Load(scale, r) : 1.f;
    Store(dst, i, c * Load(src, static_cast<int64_t>(index[r]) * d + j));
  }
}

__global__ void IotaKernel(uint32_t* v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    v[i] = static_cast<uint32_t>(i);
  }
}

// Block p handles the run of equal sorted keys that starts at p (other
// blocks return): dst[key] += sum over the run, in source order.
template <typename X, typename Y, typename S>
__global__ void SegmentAddKernel(const uint32_t* keys, const uint32_t* sources, int64_t m,
                                 const X* src, const S* scale, Y* dst, int64_t d) {
  const int64_t p = blockIdx.x;
  const uint32_t key = keys[p];
  if (p > 0 && keys[p - 1] == key) return;
  int64_t end = p + 1;
  while (end < m && keys[end] == key) ++end;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    float acc = Load(dst, static_cast<int64_t>(key) * d + j);
    for (int64_t q = p; q < end; ++q) {
      const int64_t s = sources[q];
      const float c = scale ? Load(scale, s) : 1.f;
      acc += c * Load(src, s * d + j);
    }
    Store(dst, static_cast<int64_t>(key) * d + j, acc);
  }
}

template <typename T, typename O>
__global__ void GatherRowDotKernel(const T* a, const int32_t* index, const T* b, O* out, int64_t d) {
  __shared__ float scratch[kThreads];
  const int64_t r = blockIdx.x;
  const T* ar = a + static_cast<int64_t>(index[r]) * d;
  const T* br = b + r * d;
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) acc += Load(ar, j) * Load(br, j);
  const float total = BlockSum(acc, scratch);
  if (threadIdx.x == 0) Store(out, r, total);
}

// Group offsets as a kernel argument (no host-to-device copy).
constexpr int kMaxPadGroups = 256;
struct GroupOffsets {
  int groups;
  int64_t pad_rows;
  int64_t offset[kMaxPadGroups + 1];
};

__global__ void PaddedRowIndexKernel(GroupOffsets o, int32_t* index, int64_t n) {
  for (int64_t m = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; m < n;
       m += int64_t{gridDim.x} * blockDim.x) {
    int lo = 0, hi = o.groups;  // the group g with offset[g] <= m < offset[g + 1]
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (o.offset[mid] <= m) lo = mid; else hi = mid;
    }
    index[m] = static_cast<int32_t>(lo * o.pad_rows + (m - o.offset[lo]));
  }
}

int Bits(int64_t n) {
  int bits = 1;
  while ((int64_t{1} << bits) < n) ++bits;
  return bits;
}

// Runs f with S = the scale's element type (float or bf16), or float with
// a null pointer when there is no scale.
template <typename F>
void ByScale(const Tensor* scale, F&& f) {
  if (scale == nullptr) {
    f(static_cast<float*>(nullptr), static_cast<const float*>(nullptr));
    return;
  }
  ByDType(scale->dtype(), [&](auto tag) {
    using S = SB_TYPE_OF(tag);
    f(static_cast<S*>(nullptr), Ptr<const S>(*scale));
  });
}

}  // namespace

void GatherRows(const Tensor& src, const Tensor& index, const Tensor& dst, const Tensor* scale) {
  const int64_t m = index.numel(), d = src.dim(1);
  SB_CHECK(dst.dtype() == src.dtype() && dst.dim(0) == m && dst.dim(1) == d &&
           index.dtype() == DType::kI32 && (!scale || scale->numel() == m))
      << "GatherRows " << src.ToString() << " by " << index.ToString() << " into " << dst.ToString();
  if (m * d == 0) return;
  ByDType(src.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    ByScale(scale, [&](auto stag, auto* sp) {
      using S = SB_TYPE_OF(stag);
      GatherRowsKernel<T, S><<<Blocks(m * d), kThreads, 0, kStream>>>(
          Ptr<const T>(src), Ptr<const int32_t>(index), Ptr<T>(dst), sp, m, d);
    });
  });
  CheckLaunch();
}

void ScatterAddRows(const Tensor& src, const Tensor& index, const Tensor& dst, const Tensor* scale) {
  const int64_t m = index.numel(), n = dst.dim(0), d = dst.dim(1);
  SB_CHECK(src.dim(0) == m && src.dim(1) == d && index.dtype() == DType::kI32 &&
           (!scale || scale->numel() == m))
      << "ScatterAddRows " << src.ToString() << " by " << index.ToString() << " into "
      << dst.ToString();
  if (m == 0 || d == 0) return;
  SB_CHECK_LE(m, int64_t{INT32_MAX});
  // Stable sort of (destination, source) pairs; indices are >= 0, so their
  // bits sort as unsigned.
  Tensor sources_in = Tensor::Empty({m}, DType::kI32, Device::kCuda);
  Tensor keys_out = Tensor::Empty({m}, DType::kI32, Device::kCuda);
  Tensor sources_out = Tensor::Empty({m}, DType::kI32, Device::kCuda);
  IotaKernel<<<Blocks(m), kThreads, 0, kStream>>>(Ptr<uint32_t>(sources_in), m);
  const int end_bit = Bits(std::max<int64_t>(n, 2));
  size_t temp_bytes = 0;
  SB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, Ptr<const uint32_t>(index), Ptr<uint32_t>(keys_out),
      Ptr<const uint32_t>(sources_in), Ptr<uint32_t>(sources_out), static_cast<int>(m), 0, end_bit,
      kStream));
  Tensor temp = Tensor::Empty({static_cast<int64_t>(temp_bytes) / 4 + 1}, DType::kI32, Device::kCuda);
  SB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      temp.raw(), temp_bytes, Ptr<const uint32_t>(index), Ptr<uint32_t>(keys_out),
      Ptr<const uint32_t>(sources_in), Ptr<uint32_t>(sources_out), static_cast<int>(m), 0, end_bit,
      kStream));
  ByDType(src.dtype(), [&](auto xtag) {
    using X = SB_TYPE_OF(xtag);
    ByDType(dst.dtype(), [&](auto ytag) {
      using Y = SB_TYPE_OF(ytag);
      ByScale(scale, [&](auto stag, auto* sp) {
        using S = SB_TYPE_OF(stag);
        SegmentAddKernel<X, Y, S><<<static_cast<unsigned>(m), kThreads, 0, kStream>>>(
            Ptr<const uint32_t>(keys_out), Ptr<const uint32_t>(sources_out), m, Ptr<const X>(src),
            sp, Ptr<Y>(dst), d);
      });
    });
  });
  CheckLaunch();
}

void PaddedRowIndex(const std::vector<int64_t>& rows, int64_t pad_rows, const Tensor& index) {
  const int groups = static_cast<int>(rows.size());
  SB_CHECK(groups <= kMaxPadGroups && index.dtype() == DType::kI32)
      << "PaddedRowIndex on the GPU takes up to " << kMaxPadGroups << " groups, got " << groups;
  GroupOffsets o;
  o.groups = groups;
  o.pad_rows = pad_rows;
  o.offset[0] = 0;
  for (int g = 0; g < groups; ++g) {
    SB_CHECK(rows[g] >= 0 && rows[g] <= pad_rows) << "PaddedRowIndex: " << rows[g] << " rows exceed "
                                                  << pad_rows;
    o.offset[g + 1] = o.offset[g] + rows[g];
  }
  SB_CHECK_EQ(index.numel(), o.offset[groups]);
  if (index.numel() == 0) return;
  PaddedRowIndexKernel<<<Blocks(index.numel()), kThreads, 0, kStream>>>(o, Ptr<int32_t>(index),
                                                                          index.numel());
  CheckLaunch();
}

void GatherRowDot(const Tensor& a, const Tensor& index, const Tensor& b, const Tensor& out) {
  const int64_t m = index.numel(), d = a.dim(1);
  SB_CHECK(a.dtype() == b.dtype() && b.dim(0) == m && b.dim(1) == d && out.numel() == m)
      << "GatherRowDot " << a.ToString() << " " << b.ToString() << " into " << out.ToString();
  if (m == 0) return;
  ByDType(a.dtype(), [&](auto tag) {
    using T = SB_TYPE_OF(tag);
    ByDType(out.dtype(), [&](auto otag) {
      using O = SB_TYPE_OF(otag);
      GatherRowDotKernel<<<static_cast<unsigned>(m), kThreads, 0, kStream>>>(
          Ptr<const T>(a), Ptr<const int32_t>(index), Ptr<const T>(b), Ptr<O>(out), d);
    });
  });
  CheckLaunch();
}

}  // namespace sb::cuda
