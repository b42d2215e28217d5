// Error checking for cuBLAS calls, the twin of cuda_check.h.
//
// MAGNETAR_CUBLAS_CHECK(call) evaluates a call that returns cublasStatus_t and throws
// std::runtime_error naming the call, its place and the status when it is not
// CUBLAS_STATUS_SUCCESS, e.g.
//   "src/backend/cuda/gemm_tc.cu:80: cublasGemmEx(...): CUBLAS_STATUS_NOT_SUPPORTED (...)"
#pragma once

#include <cublas_api.h>

#include <stdexcept>
#include <string>

namespace magnetar::gpu {

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " +
                           cublasGetStatusName(status) + " (" + cublasGetStatusString(status) +
                           ")");
}

}  // namespace magnetar::gpu

#define MAGNETAR_CUBLAS_CHECK(call) ::magnetar::gpu::check_cublas((call), #call, __FILE__, __LINE__)
