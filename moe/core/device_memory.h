// Allocation and copies on CPU or CUDA memory. The only place outside
// moe/ops/ that knows whether CUDA was built (SB_CUDA).
#pragma once

#include <cstddef>

#include "moe/core/dtype.h"

namespace sb {

void* DeviceAlloc(Device device, size_t bytes);
void DeviceFree(Device device, void* ptr);
void DeviceMemset(Device device, void* ptr, int value, size_t bytes);
// Copies between any two devices (host<->device, device<->device).
void DeviceCopy(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes);
void DeviceCopyToHost(Device src_device, void* host_dst, const void* src, size_t bytes);
// Number of visible CUDA devices; 0 when built without CUDA or without a driver.
int CudaDeviceCount();
bool CudaBuilt();

}  // namespace sb
