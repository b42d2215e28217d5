// The tensor inventory of a DeepSeek V4 GGUF, derived from its hyperparameters.
//
// ds4's files have a fixed set of tensor names and shapes (gguf.md §3): 6 global tensors, 24
// in every layer, compressor tensors in compressed layers, indexer tensors in ratio-4 layers, and
// optionally the 32 tensors of the MTP block (`mtp.0.*`). This module lists what a model of a
// given ModelConfig must contain, and checks a file's tensor directory against that list. It is
// used by `inspect` (validation), `synth` (what to write) and weight binding.
//
// Types are checked in two tiers. *Accepted* types are those the engine computes with: every
// weight matrix may be F32, F16, BF16, Q8_0, Q2_K, Q4_K or IQ2_XXS (so float32 oracle twins and
// re-quantized files load); norms and small vectors are F32; the hash-routing table is I32.
// *ds4 types* are the exact mix ds4 itself requires; a file outside it is valid for Magnetar but
// reported as not loadable by ds4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_reader.h"
#include "model/model_config.h"
#include "quant/ggml_type.h"

namespace magnetar::model {

// What a tensor is, which decides its storage type.
enum class WeightClass {
  kVector,        // norms, HC scales and bases, sinks, router bias: F32
  kPlain,         // F16 in ds4: embedding, HC mixers, router, compressors, indexer
  kDense,         // Q8_0 in ds4: attention projections, shared expert, LM head, MTP projections
  kExpertGateUp,  // routed experts, gate and up: IQ2_XXS (q2) or Q4_K (q4)
  kExpertDown,    // routed experts, down: Q2_K (q2) or Q4_K (q4)
  kTokenMap,      // hash-routing table token -> experts: I32
  kMtpPlain,      // F32 (or F16) in ds4's MTP file: MTP HC mixers and router
};

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  WeightClass cls;
  bool optional = false;  // may be absent (ds4 binds exp_probs_b of hash layers optionally)
  bool mtp = false;       // part of the MTP block
};

// Prefixes of tensor names.
std::string layer_prefix(uint32_t layer);  // "blk.N."
inline constexpr const char* kMtpPrefix = "mtp.0.";

// Every tensor of the main model, in the order synth writes them (token embedding, layers, output
// head), followed by the MTP block when `with_mtp`.
std::vector<ExpectedTensor> model_tensors(const ModelConfig& config, bool with_mtp);

// The tensors of the MTP block alone.
std::vector<ExpectedTensor> mtp_tensors(const ModelConfig& config);

std::vector<quant::GgmlType> accepted_types(WeightClass cls);
std::vector<quant::GgmlType> ds4_types(WeightClass cls);

struct LayoutIssue {
  enum class Kind { kMissing, kExtra, kShape, kType, kPairing };
  Kind kind;
  std::string tensor;
  std::string detail;
};

std::string_view issue_kind_name(LayoutIssue::Kind kind);

struct LayoutReport {
  std::vector<LayoutIssue> issues;  // empty when the file matches the layout
  bool has_mtp = false;             // the MTP block is present (complete)
  // The file uses exactly ds4's types (and ds4's routed-expert rules). Informational.
  bool ds4_types = true;
  std::vector<std::string> ds4_type_notes;  // why not, first few tensors

  bool ok() const { return issues.empty(); }
};

// Checks names, shapes and types. The MTP block must be entirely present or entirely absent;
// routed gate and up must share a type within a layer.
LayoutReport check_layout(const ModelConfig& config, const std::vector<gguf::TensorInfo>& tensors);

}  // namespace magnetar::model
