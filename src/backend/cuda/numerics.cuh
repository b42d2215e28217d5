// Row-wise numeric kernels of the forward pass, the GPU twins of cpu/numerics.h: RMSNorm over rows
// and the FP8/FP4 block simulations (model.md §3.2–3.4). The device-side pieces they are made of
// are in numerics_device.cuh. No device code here: .cc files may include this header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace magnetar::gpu {

// cpu::rms_norm of each of n_rows rows of `dim` values: y = w · (x · r); w == nullptr for the
// unweighted form. y may alias x. One 256-thread block per row in the CPU's order; outside
// reference_order() (linear.cuh), for rows up to 8192 values, the same sums with all of a thread's
// loads in flight at once (same bits).
void rms_norm_rows_cuda(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim,
                        float eps, cudaStream_t stream);

// cpu::fp8_simulate / cpu::fp4_simulate of each of n_rows rows of `cols` values, in blocks of
// `block` (the last block of a row may be shorter), in place. One warp per block; outside
// reference_order() each value of blocks up to 256 long is read once instead of twice (same bits:
// the block maximum is exact in any order, the rounding elementwise).
void fp8_simulate_rows_cuda(float* x, int64_t n_rows, int64_t cols, int64_t block,
                            cudaStream_t stream);
void fp4_simulate_rows_cuda(float* x, int64_t n_rows, int64_t cols, int64_t block,
                            cudaStream_t stream);

}  // namespace magnetar::gpu
