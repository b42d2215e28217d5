// Public dot-product entry points: activation formats, instruction-set choice, dispatch.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "quant/codecs.h"
#include "quant/dot_kernels.h"
#include "quant/quant.h"

#if defined(MAGNETAR_HAVE_AVX2_KERNELS)
#include <cpuid.h>
#endif

namespace magnetar::quant {
namespace {

bool detect_avx2() {
#if defined(MAGNETAR_HAVE_AVX2_KERNELS)
  __builtin_cpu_init();
  // F16C is not among the features __builtin_cpu_supports knows on every compiler; read it from
  // CPUID leaf 1 directly (ECX bit 29).
  unsigned eax = 0;
  unsigned ebx = 0;
  unsigned ecx = 0;
  unsigned edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
  return false;
#endif
}

CpuIsa choose_isa() {
  const char* forced = std::getenv("MAGNETAR_CPU_ISA");
  if (forced != nullptr && std::strcmp(forced, "portable") == 0) return CpuIsa::kPortable;
  return cpu_isa_supported(CpuIsa::kAvx2) ? CpuIsa::kAvx2 : CpuIsa::kPortable;
}

const detail::DotKernels& kernels(CpuIsa isa) {
#if defined(MAGNETAR_HAVE_AVX2_KERNELS)
  if (isa == CpuIsa::kAvx2) return detail::kAvx2Dot;
#endif
  return detail::kPortableDot;
}

// The kernel for `weight` in `set`, or nullptr for a type without one.
DotKernel pick(const detail::DotKernels& set, GgmlType weight) {
  switch (weight) {
    case GgmlType::kF32:
      return set.f32;
    case GgmlType::kF16:
      return set.f16;
    case GgmlType::kBF16:
      return set.bf16;
    case GgmlType::kQ8_0:
      return set.q8_0;
    case GgmlType::kQ2_K:
      return set.q2_k;
    case GgmlType::kQ4_K:
      return set.q4_k;
    case GgmlType::kIQ2_XXS:
      return set.iq2_xxs;
    default:
      return nullptr;
  }
}

void check_dot(const char* what, GgmlType weight, int64_t n) {
  if (!can_dot(weight)) {
    throw std::invalid_argument(std::string(what) + ": no dot product for weight type " +
                                std::string(type_name(weight)));
  }
  if (!row_fits(weight, n)) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(n) +
                                " values is not a whole number of " +
                                std::string(type_name(weight)) + " blocks");
  }
}

}  // namespace

bool can_dot(GgmlType weight) { return pick(detail::kPortableDot, weight) != nullptr; }

ActivationFormat activation_format(GgmlType weight) {
  switch (weight) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return ActivationFormat::kF32;
    case GgmlType::kQ8_0:
      return ActivationFormat::kQ8_0F;
    case GgmlType::kQ2_K:
    case GgmlType::kQ4_K:
    case GgmlType::kIQ2_XXS:
      return ActivationFormat::kQ8_K;
    default:
      throw std::invalid_argument("activation_format: no dot product for weight type " +
                                  std::string(type_name(weight)));
  }
}

int64_t activation_row_bytes(GgmlType weight, int64_t n) {
  check_dot("activation_row_bytes", weight, n);
  switch (activation_format(weight)) {
    case ActivationFormat::kF32:
      return n * static_cast<int64_t>(sizeof(float));
    case ActivationFormat::kQ8_0F:
      return n / BlockQ8_0F::kBlockElems * static_cast<int64_t>(sizeof(BlockQ8_0F));
    case ActivationFormat::kQ8_K:
      return n / BlockQ8_K::kBlockElems * static_cast<int64_t>(sizeof(BlockQ8_K));
  }
  return 0;  // unreachable: the switch covers every format
}

void quantize_activation_row(GgmlType weight, const float* x, void* dst, int64_t n) {
  check_dot("quantize_activation_row", weight, n);
  switch (activation_format(weight)) {
    case ActivationFormat::kF32:
      std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
      break;
    case ActivationFormat::kQ8_0F:
      detail::quantize_q8_0f(x, static_cast<BlockQ8_0F*>(dst), n / BlockQ8_0F::kBlockElems);
      break;
    case ActivationFormat::kQ8_K:
      detail::quantize_q8_k(x, static_cast<BlockQ8_K*>(dst), n / BlockQ8_K::kBlockElems);
      break;
  }
}

bool cpu_isa_supported(CpuIsa isa) {
  if (isa == CpuIsa::kPortable) return true;
  static const bool avx2 = detect_avx2();
  return avx2;
}

CpuIsa active_cpu_isa() {
  static const CpuIsa isa = choose_isa();
  return isa;
}

std::string_view cpu_isa() { return active_cpu_isa() == CpuIsa::kAvx2 ? "avx2" : "portable"; }

DotKernel dot_kernel(GgmlType weight) {
  check_dot("dot_kernel", weight, 0);
  return pick(kernels(active_cpu_isa()), weight);
}

float vec_dot(GgmlType weight, int64_t n, const void* weight_row, const void* activation_row) {
  check_dot("vec_dot", weight, n);
  return pick(kernels(active_cpu_isa()), weight)(n, weight_row, activation_row);
}

float vec_dot_isa(CpuIsa isa, GgmlType weight, int64_t n, const void* weight_row,
                  const void* activation_row) {
  check_dot("vec_dot_isa", weight, n);
  if (!cpu_isa_supported(isa)) throw std::invalid_argument("vec_dot_isa: ISA not supported here");
  return pick(kernels(isa), weight)(n, weight_row, activation_row);
}

}  // namespace magnetar::quant
