#include "backend/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_check.h"

namespace magnetar::gpu {

std::vector<CudaDeviceInfo> cuda_devices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    // No driver, a driver older than the runtime, or no device: all mean "no usable GPU". Reading
    // the error clears it, so that the next runtime call does not report it again.
    cudaGetLastError();
    return {};
  }
  std::vector<CudaDeviceInfo> devices;
  devices.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    MAGNETAR_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    devices.push_back({.index = i,
                       .name = prop.name,
                       .sm_major = prop.major,
                       .sm_minor = prop.minor,
                       .total_memory = prop.totalGlobalMem,
                       .multiprocessors = prop.multiProcessorCount});
  }
  return devices;
}

}  // namespace magnetar::gpu
