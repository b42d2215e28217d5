// Quantized tensor formats: decoding, encoding and CPU dot products (shared/spec/gguf.md §4).
//
// Magnetar computes with the eight formats that ds4's DeepSeek V4 Flash files use or need:
// F32, F16, BF16, Q8_0, Q2_K, Q4_K and IQ2_XXS weights, plus Q8_K, the activation format of the
// K-quant and IQ2_XXS dot products. A row of n values is n / block_elems tightly packed blocks
// (see ggml_type.h for the geometry and blocks.h for the block layouts).
//
// Encoders reproduce ds4's quantizer: same fits, same rounding (ties to even, except Q8_0 codes,
// which round half away from zero), so a tensor quantized here has the bytes ds4 would write.
// Importance vectors ("imatrix" values) hold one non-negative weight per column; they steer the
// error of the fits towards the columns that matter and are ignored by F32/F16/BF16/Q8_0/Q8_K.
// Inputs to the encoders must be finite; values whose block scale overflows f16 (|x| beyond
// about 8e6 for Q8_0, 1e6 for Q2_K/Q4_K/IQ2_XXS) cannot be represented.
//
// Dot products: the weight row stays in its file format and the activation row is first brought
// into the format the weight type pairs with (activation_format), once per activation row, then
// vec_dot() runs integer or f32 kernels. Kernels exist in portable C++ and in AVX2/FMA/F16C; the
// AVX2 set is used when the CPU has it, unless the environment variable MAGNETAR_CPU_ISA is
// "portable" when the process first asks for a kernel.
//
// Errors: an unsupported type, or a length that is not a whole number of blocks, throws
// std::invalid_argument. Every function may be called concurrently from any number of threads.
#pragma once

#include <cstdint>
#include <string_view>

#include "quant/ggml_type.h"

namespace magnetar::quant {

// True for the types dequantize_row accepts: F32, F16, BF16, Q8_0, Q8_K, Q2_K, Q4_K, IQ2_XXS.
bool can_dequantize(GgmlType type);

// True for the types quantize_row / quantize_matrix accept (the same eight types).
bool can_quantize(GgmlType type);

// Decodes a row of n values (n a multiple of the type's block size) from `src` into `dst`.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes a row of n values into row_bytes(type, n) bytes at `dst`. `importance` (n values, or
// nullptr) selects the importance-weighted Q2_K/Q4_K encoders; without it they use their reference
// encoders. IQ2_XXS needs importance by design; without it every element gets weight 1 (use
// quantize_matrix to get ds4's synthetic importance instead).
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n,
                  const float* importance = nullptr);

// Encodes an nrows x ncols row-major matrix, row by row, into nrows * row_bytes(type, ncols)
// bytes. `importance` has ncols values (one per column, shared by all rows). For IQ2_XXS without
// importance it uses ds4's synthetic importance, the column energy sum_r src[r][c]^2 of this
// matrix (§4.9), so that a matrix quantizes the way ds4 quantizes an expert without an imatrix.
void quantize_matrix(GgmlType type, const float* src, void* dst, int64_t nrows, int64_t ncols,
                     const float* importance = nullptr);

// The activation side of a dot product.
enum class ActivationFormat {
  kF32,    // plain floats, for F32 / F16 / BF16 weights
  kQ8_0F,  // BlockQ8_0F (f32 scale + 32 int8, lrintf codes), for Q8_0 weights
  kQ8_K,   // BlockQ8_K, for Q2_K / Q4_K / IQ2_XXS weights
};

// True for the weight types vec_dot accepts: F32, F16, BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS.
bool can_dot(GgmlType weight);

ActivationFormat activation_format(GgmlType weight);

// Bytes of an activation row of n values prepared for `weight`.
int64_t activation_row_bytes(GgmlType weight, int64_t n);

// Brings n activation values into activation_format(weight) at `dst`
// (activation_row_bytes(weight, n) bytes). For F32/F16/BF16 weights this is a copy.
void quantize_activation_row(GgmlType weight, const float* x, void* dst, int64_t n);

// Dot product of a weight row of n values with an activation row prepared by
// quantize_activation_row for the same weight type, using the active instruction set.
float vec_dot(GgmlType weight, int64_t n, const void* weight_row, const void* activation_row);

// The kernel behind vec_dot for `weight` on the active instruction set, for callers that take
// many dot products of one type and want to skip the per-call dispatch and checks. The caller
// guarantees that n is a multiple of the block size.
using DotKernel = float (*)(int64_t n, const void* weight_row, const void* activation_row);
DotKernel dot_kernel(GgmlType weight);

enum class CpuIsa { kPortable, kAvx2 };

// The instruction set vec_dot uses, chosen once per process, and its name ("avx2", "portable").
CpuIsa active_cpu_isa();
std::string_view cpu_isa();

// Whether this CPU can run `isa`'s kernels (kAvx2 needs AVX2, FMA and F16C).
bool cpu_isa_supported(CpuIsa isa);

// vec_dot on an explicit instruction set (which must be supported), so that tests and benchmarks
// can compare the kernel sets within one process.
float vec_dot_isa(CpuIsa isa, GgmlType weight, int64_t n, const void* weight_row,
                  const void* activation_row);

}  // namespace magnetar::quant
