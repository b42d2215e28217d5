// The CUDA devices this process can use.
//
// The CUDA backend lives in namespace magnetar::gpu rather than magnetar::cuda so that the
// libcu++ namespace ::cuda (cuda::std, cuda::ptx, ...) stays reachable unqualified in our kernels.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

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

}  // namespace magnetar::gpu
