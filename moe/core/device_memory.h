// Allocation and copies on CPU or CUDA memory. The only place outside
// moe/ops/ that knows whether CUDA was built (SB_CUDA).
//
// CUDA memory comes from the CUDA runtime's stream-ordered pool
// (cudaMallocAsync on the one stream every kernel runs on, with the pool's
// release threshold at its maximum): freeing and reallocating a buffer of
// the same size costs no driver call and no device synchronisation, which
// keeps temporaries cheap (PyTorch's caching allocator in the runtime).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "moe/core/dtype.h"

namespace sb {

void* DeviceAlloc(Device device, size_t bytes);
void DeviceFree(Device device, void* ptr);
void DeviceMemset(Device device, void* ptr, int value, size_t bytes);
// Copies between any two devices (host<->device, device<->device). A copy
// that touches the host waits for the device work queued before it.
void DeviceCopy(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes);
void DeviceCopyToHost(Device src_device, void* host_dst, const void* src, size_t bytes);
// Number of visible CUDA devices; 0 when built without CUDA or without a driver.
int CudaDeviceCount();
bool CudaBuilt();
// Waits for all queued device work (timers; no-op without CUDA).
void DeviceSynchronize();

// The CUDA memory pool's use in bytes since the last reset (zeros without CUDA).
struct CudaMemoryStats {
  int64_t in_use = 0;         // bytes handed out now
  int64_t peak_in_use = 0;    // most bytes handed out at once
  int64_t peak_reserved = 0;  // most bytes the pool held from the driver
};
CudaMemoryStats GetCudaMemoryStats();
void ResetCudaPeakMemory();
// "NVIDIA H200, 132 SMs, 139.8 GiB, compute 9.0" for device 0; "" when none.
std::string CudaDeviceDescription();
// Free bytes on the current device (cudaMemGetInfo); -1 without one.
int64_t CudaFreeMemory();

}  // namespace sb
