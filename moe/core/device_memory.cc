#include "moe/core/device_memory.h"

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

void* DeviceAlloc(Device device, size_t bytes) {
  if (bytes == 0) bytes = 64;
  if (device == Device::kCpu) {
    // 64-byte alignment for vector loads; aligned_alloc needs a multiple.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    SB_CHECK(p != nullptr) << "out of host memory allocating " << bytes << " bytes";
    return p;
  }
#if SB_CUDA
  void* p = nullptr;
  SB_CUDA_CHECK(cudaMalloc(&p, bytes));
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
  SB_CUDA_CHECK(cudaFree(ptr));
#endif
}

void DeviceMemset(Device device, void* ptr, int value, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::kCpu) {
    std::memset(ptr, value, bytes);
    return;
  }
#if SB_CUDA
  SB_CUDA_CHECK(cudaMemset(ptr, value, bytes));
#endif
}

void DeviceCopy(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::kCpu && src_device == Device::kCpu) {
    std::memmove(dst, src, bytes);
    return;
  }
#if SB_CUDA
  SB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
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

}  // namespace sb
