// The device copies of the IQ2_XXS tables (weight_decode.cuh).
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/weight_decode.cuh"
#include "quant/iq2xxs_tables.h"

namespace magnetar::gpu {

Iq2xxsTables iq2xxs_device_tables() {
  // One allocation per device for the life of the process: kernels of any stream may use it.
  return once_per_device([](int) {
    void* memory = nullptr;
    MAGNETAR_CUDA_CHECK(
        cudaMalloc(&memory, sizeof(quant::kIq2xxsGrid) + sizeof(quant::kIq2xsSigns)));
    auto* grid = static_cast<uint64_t*>(memory);
    auto* signs = reinterpret_cast<uint8_t*>(grid + 256);
    MAGNETAR_CUDA_CHECK(
        cudaMemcpy(grid, quant::kIq2xxsGrid, sizeof(quant::kIq2xxsGrid), cudaMemcpyHostToDevice));
    MAGNETAR_CUDA_CHECK(
        cudaMemcpy(signs, quant::kIq2xsSigns, sizeof(quant::kIq2xsSigns), cudaMemcpyHostToDevice));
    return Iq2xxsTables{grid, signs};
  });
}

}  // namespace magnetar::gpu
