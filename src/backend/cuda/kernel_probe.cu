// Whether this build's kernels can run on the current device (cuda_device.h).
#include <cuda_runtime.h>

#include "backend/cuda/cuda_device.h"

namespace magnetar::gpu {
namespace {

__global__ void probe_kernel() {}

}  // namespace

bool cuda_kernels_runnable() {
  cudaFuncAttributes attributes;
  // Fails with cudaErrorInvalidDeviceFunction (or no device) when the binary holds no code for
  // the device's architecture.
  if (cudaFuncGetAttributes(&attributes, probe_kernel) == cudaSuccess) return true;
  cudaGetLastError();
  return false;
}

}  // namespace magnetar::gpu
