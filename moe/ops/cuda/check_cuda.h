// Check macros for CUDA runtime and cuBLAS return codes.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "moe/core/check.h"

#define SB_CUDA_CHECK(expr)                                                    \
  do {                                                                         \
    cudaError_t sb_err = (expr);                                               \
    SB_CHECK(sb_err == cudaSuccess) << cudaGetErrorString(sb_err);             \
  } while (0)

#define SB_CUBLAS_CHECK(expr)                                                  \
  do {                                                                         \
    cublasStatus_t sb_st = (expr);                                             \
    SB_CHECK(sb_st == CUBLAS_STATUS_SUCCESS) << cublasGetStatusString(sb_st);  \
  } while (0)
