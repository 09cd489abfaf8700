// SB_HOST_DEVICE marks small functions that run both in CPU code and in CUDA
// kernels (per-row routing logic, counter-based RNG), so that the CPU tests
// exercise the same code the GPU runs.
#pragma once

#ifdef __CUDACC__
#define SB_HOST_DEVICE __host__ __device__
#else
#define SB_HOST_DEVICE
#endif
