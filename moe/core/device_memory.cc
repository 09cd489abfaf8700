#include "moe/core/device_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "moe/core/check.h"

#if SB_CUDA
#include <cuda_runtime_api.h>
#define SB_CUDA_CHECK(expr)                                                   \
  do {                                                                        \
    cudaError_t sb_err = (expr);                                              \
    SB_CHECK(sb_err == cudaSuccess) << cudaGetErrorString(sb_err);            \
  } while (0)
#endif

namespace sb {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF64: return "f64";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
  }
  return "?";
}

const char* DeviceName(Device device) { return device == Device::kCpu ? "cpu" : "cuda"; }

bool CudaBuilt() { return SB_CUDA != 0; }

#if SB_CUDA
namespace {
// Every kernel, copy and allocation runs on the legacy default stream, so
// stream order alone makes reuse of pool memory safe.
constexpr cudaStream_t kStream = nullptr;

cudaMemPool_t Pool() {
  static cudaMemPool_t pool = [] {
    int device = 0;
    SB_CUDA_CHECK(cudaGetDevice(&device));
    cudaMemPool_t p = nullptr;
    SB_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&p, device));
    // Keep freed memory in the pool instead of returning it at each sync.
    uint64_t keep = UINT64_MAX;
    SB_CUDA_CHECK(cudaMemPoolSetAttribute(p, cudaMemPoolAttrReleaseThreshold, &keep));
    return p;
  }();
  return pool;
}
}  // namespace
#endif

void* DeviceAlloc(Device device, size_t bytes) {
  if (bytes == 0) bytes = 64;
  if (device == Device::kCpu) {
    // 64-byte alignment for vector loads; aligned_alloc needs a multiple.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    SB_CHECK(p != nullptr) << "out of host memory allocating " << bytes << " bytes";
    return p;
  }
#if SB_CUDA
  Pool();
  void* p = nullptr;
  const cudaError_t err = cudaMallocAsync(&p, bytes, kStream);
  if (err != cudaSuccess) {
    cudaGetLastError();
    const CudaMemoryStats s = GetCudaMemoryStats();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    SB_CHECK(false) << "CUDA allocation of " << bytes << " bytes failed (" << cudaGetErrorString(err)
                    << "); in use " << s.in_use << " bytes, device free " << free_bytes << " of "
                    << total_bytes << ": lower train.micro_batch_size or set "
                    << "train.activation_recompute";
  }
  return p;
#else
  SB_CHECK(false) << "CUDA tensor requested but Switchboard was built without CUDA";
  return nullptr;
#endif
}

void DeviceFree(Device device, void* ptr) {
  if (ptr == nullptr) return;
  if (device == Device::kCpu) {
    std::free(ptr);
    return;
  }
#if SB_CUDA
  SB_CUDA_CHECK(cudaFreeAsync(ptr, kStream));
#endif
}

void DeviceMemset(Device device, void* ptr, int value, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::kCpu) {
    std::memset(ptr, value, bytes);
    return;
  }
#if SB_CUDA
  SB_CUDA_CHECK(cudaMemsetAsync(ptr, value, bytes, kStream));
#endif
}

void DeviceCopy(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::kCpu && src_device == Device::kCpu) {
    std::memmove(dst, src, bytes);
    return;
  }
#if SB_CUDA
  if (dst_device == Device::kCuda && src_device == Device::kCuda) {
    SB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, kStream));
  } else {
    // Host memory may be pageable and freed right after: a blocking copy.
    SB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  }
#else
  SB_CHECK(false) << "CUDA copy requested but Switchboard was built without CUDA";
#endif
}

void DeviceCopyToHost(Device src_device, void* host_dst, const void* src, size_t bytes) {
  DeviceCopy(Device::kCpu, host_dst, src_device, src, bytes);
}

int CudaDeviceCount() {
#if SB_CUDA
  // With no driver the call fails and leaves `count` untouched: start at 0.
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

void DeviceSynchronize() {
#if SB_CUDA
  if (CudaDeviceCount() > 0) SB_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

CudaMemoryStats GetCudaMemoryStats() {
  CudaMemoryStats s;
#if SB_CUDA
  if (CudaDeviceCount() == 0) return s;
  uint64_t v = 0;
  SB_CUDA_CHECK(cudaMemPoolGetAttribute(Pool(), cudaMemPoolAttrUsedMemCurrent, &v));
  s.in_use = static_cast<int64_t>(v);
  SB_CUDA_CHECK(cudaMemPoolGetAttribute(Pool(), cudaMemPoolAttrUsedMemHigh, &v));
  s.peak_in_use = static_cast<int64_t>(v);
  SB_CUDA_CHECK(cudaMemPoolGetAttribute(Pool(), cudaMemPoolAttrReservedMemHigh, &v));
  s.peak_reserved = static_cast<int64_t>(v);
#endif
  return s;
}

void ResetCudaPeakMemory() {
#if SB_CUDA
  if (CudaDeviceCount() == 0) return;
  uint64_t zero = 0;  // resets the high-water marks to the current use
  SB_CUDA_CHECK(cudaMemPoolSetAttribute(Pool(), cudaMemPoolAttrUsedMemHigh, &zero));
  SB_CUDA_CHECK(cudaMemPoolSetAttribute(Pool(), cudaMemPoolAttrReservedMemHigh, &zero));
#endif
}

std::string CudaDeviceDescription() {
#if SB_CUDA
  if (CudaDeviceCount() == 0) return "";
  cudaDeviceProp prop;
  SB_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s, %d SMs, %.1f GiB, compute %d.%d", prop.name,
                prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, prop.major,
                prop.minor);
  return buf;
#else
  return "";
#endif
}

int64_t CudaFreeMemory() {
#if SB_CUDA
  if (CudaDeviceCount() == 0) return -1;
  size_t free_bytes = 0, total_bytes = 0;
  SB_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<int64_t>(free_bytes);
#else
  return -1;
#endif
}

}  // namespace sb
