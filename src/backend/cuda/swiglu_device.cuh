// The experts' activation (cpu run_expert, model.md §7.3) for device code: the gate clamped from
// above, the up projection clamped both ways, then silu(gate) · up, with the CPU's operations in
// the CPU's order (exp in double, rounded once; see numerics_device.cuh). Shared by the per-pair
// path (moe.cu) and the grouped one (expert_groups.cu), so that both give the same bits for the
// same inputs. Device code only.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/numerics_device.cuh"

namespace magnetar::gpu {

__device__ __forceinline__ float silu(float z) { return z / (1.0f + exp_f32(-z)); }

__device__ __forceinline__ float swiglu(float gate, float up, float limit) {
  const float g = fminf(gate, limit);
  const float u = fminf(fmaxf(up, -limit), limit);
  return silu(g) * u;
}

}  // namespace magnetar::gpu
