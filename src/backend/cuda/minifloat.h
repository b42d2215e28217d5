// FP8 (E4M3) and FP4 (E2M1) rounding and codes, for host and device code alike.
//
// The rounding functions are the twins of cpu::pow2_ceil, cpu::round_e4m3 and cpu::round_e2m1
// (backend/cpu/numerics.h): the same operations in the same order, so host and device give the
// CPU reference's bits (tests/backend/cuda checks this). The code functions map a value that is
// already on a format's grid to its bit pattern and back, which is how the GPU stores the KV and
// indexer rows of a sequence compactly without changing any value (row_codec.h).
//
// Every function is usable from .cc files (plain C++) and from CUDA kernels.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MAGNETAR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MAGNETAR_HOST_DEVICE inline
#endif

namespace magnetar::gpu {

MAGNETAR_HOST_DEVICE uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

MAGNETAR_HOST_DEVICE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// 2^k for k in the normal exponent range [-126, 127].
MAGNETAR_HOST_DEVICE float exp2_int(int k) {
  return bits_float(static_cast<uint32_t>(k + 127) << 23);
}

// 2^ceil(log2(s)) for a positive normal s, by the bit formula of model.md §3.3.
MAGNETAR_HOST_DEVICE float pow2_ceil(float s) {
  const uint32_t bits = float_bits(s);
  const uint32_t round_up = (bits & 0x7fffffu) != 0 ? 1u : 0u;
  return bits_float(((bits >> 23) + round_up) << 23);
}

// Nearest value of a sign-magnitude minifloat (see cpu::round_minifloat): the grid step of x's
// binade, never below that of the smallest normal binade; rintf rounds ties to even.
MAGNETAR_HOST_DEVICE float round_minifloat(float x, int min_exp, int mant_bits, float max_value) {
  const float a = fminf(fabsf(x), max_value);
  const int biased_exp = static_cast<int>(float_bits(a) >> 23);
  const int exp = biased_exp - 127 > min_exp ? biased_exp - 127 : min_exp;
  const float step = exp2_int(exp - mant_bits);
  return copysignf(rintf(a / step) * step, x);
}

MAGNETAR_HOST_DEVICE float round_e4m3(float x) { return round_minifloat(x, -6, 3, 448.0f); }
MAGNETAR_HOST_DEVICE float round_e2m1(float x) { return round_minifloat(x, 0, 1, 6.0f); }

// The two block simulations of model.md §3.3–3.4: the amax floor and the reciprocal of the format's
// largest value, as fp32 constants exactly like cpu::fp8_simulate / cpu::fp4_simulate.
struct MinifloatFormat {
  float amax_floor;
  float inv_max;
  bool fp4;  // E2M1; otherwise E4M3
};
MAGNETAR_HOST_DEVICE constexpr MinifloatFormat fp8_format() {
  return {1e-4f, 1.0f / 448.0f, false};
}
MAGNETAR_HOST_DEVICE constexpr MinifloatFormat fp4_format() {
  return {6.0f * 0x1p-126f, 1.0f / 6.0f, true};
}

MAGNETAR_HOST_DEVICE float round_to_format(const MinifloatFormat& f, float x) {
  return f.fp4 ? round_e2m1(x) : round_e4m3(x);
}

// The E4M3 bit pattern of a value on the E4M3 grid (|q| <= 448): sign, 4 exponent bits (bias 7;
// 0 for the subnormals m * 2^-9), 3 mantissa bits. -0 keeps its sign bit.
MAGNETAR_HOST_DEVICE uint8_t e4m3_code(float q) {
  const uint32_t bits = float_bits(q);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const float a = fabsf(q);
  if (a < 0x1p-6f) return static_cast<uint8_t>(sign | static_cast<uint8_t>(a * 512.0f));
  const int exp = static_cast<int>((bits >> 23) & 0xffu) - 127;
  const uint32_t mant = (bits >> 20) & 7u;
  return static_cast<uint8_t>(sign | ((exp + 7) << 3) | mant);
}

MAGNETAR_HOST_DEVICE float e4m3_value(uint8_t code) {
  const int exp = (code >> 3) & 15;
  const int mant = code & 7;
  const float a = exp == 0 ? static_cast<float>(mant) * 0x1p-9f
                           : exp2_int(exp - 7) * (1.0f + static_cast<float>(mant) * 0.125f);
  return (code & 0x80) ? -a : a;
}

// The E2M1 bit pattern (4 bits) of a value on the E2M1 grid {0, 0.5, 1, 1.5, 2, 3, 4, 6}: sign,
// 2 exponent bits (bias 1; 0 for 0 and 0.5), 1 mantissa bit.
MAGNETAR_HOST_DEVICE uint8_t e2m1_code(float q) {
  const uint32_t bits = float_bits(q);
  const uint8_t sign = static_cast<uint8_t>((bits >> 28) & 0x8u);
  const float a = fabsf(q);
  if (a < 1.0f) return static_cast<uint8_t>(sign | static_cast<uint8_t>(a * 2.0f));
  const int exp = static_cast<int>((bits >> 23) & 0xffu) - 127;
  const uint32_t mant = (bits >> 22) & 1u;
  return static_cast<uint8_t>(sign | ((exp + 1) << 1) | mant);
}

MAGNETAR_HOST_DEVICE float e2m1_value(uint8_t code) {
  const int exp = (code >> 1) & 3;
  const int mant = code & 1;
  const float a = exp == 0 ? static_cast<float>(mant) * 0.5f
                           : exp2_int(exp - 1) * (1.0f + static_cast<float>(mant) * 0.5f);
  return (code & 0x8) ? -a : a;
}

}  // namespace magnetar::gpu
