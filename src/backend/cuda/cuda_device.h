// The CUDA devices this process can use.
//
// The CUDA backend lives in namespace magnetar::gpu rather than magnetar::cuda so that the
// libcu++ namespace ::cuda (cuda::std, cuda::ptx, ...) stays reachable unqualified in our kernels.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"

namespace magnetar::gpu {

struct CudaDeviceInfo {
  int index;         // the runtime's device ordinal (cudaSetDevice)
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  int sm_major;      // compute capability, 9.0 for Hopper
  int sm_minor;
  size_t total_memory;  // bytes of device memory
  int multiprocessors;
};

// Every device the CUDA runtime reports, in ordinal order. A machine without a driver or without
// a GPU gives an empty vector (that is not an error); std::runtime_error is thrown only when a
// device is reported but its properties cannot be read.
std::vector<CudaDeviceInfo> cuda_devices();

// True when the kernels of this build have code for the current device (a build for sm_90a does
// not run on an sm_80 GPU). False without a device.
bool cuda_kernels_runnable();

// compute(device) for the current device, computed on the first call for that device and cached
// for the life of the process: per-device facts and set-ups (occupancy, kernel attributes, tables
// in device memory) that would otherwise cost driver calls in every launch. Each call site has its
// own cache (a lambda's type is unique). Thread-safe; an exception from compute caches nothing.
template <typename Compute>
auto once_per_device(Compute compute) {
  using Value = decltype(compute(0));
  static std::mutex mutex;
  static std::map<int, Value> by_device;
  int device = 0;
  MAGNETAR_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = by_device.find(device);
  if (it == by_device.end()) it = by_device.emplace(device, compute(device)).first;
  return it->second;
}

}  // namespace magnetar::gpu
