// Error checking for CUDA runtime calls.
//
// MAGNETAR_CUDA_CHECK(call) evaluates a call that returns cudaError_t and throws
// std::runtime_error when it is not cudaSuccess, e.g.
//   "src/backend/cuda/dequantize.cu:123: cudaMalloc(&p, n): cudaErrorMemoryAllocation (out of
//    memory)"
// The engine never exits from library code: the caller decides whether a failed GPU call ends the
// program or only the request. After a kernel launch, check cudaGetLastError() to catch launch
// configuration errors; faults inside a kernel surface at the next synchronizing call.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace magnetar::gpu {

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " +
                           cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

}  // namespace magnetar::gpu

#define MAGNETAR_CUDA_CHECK(call) ::magnetar::gpu::check_cuda((call), #call, __FILE__, __LINE__)
