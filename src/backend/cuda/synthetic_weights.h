// Full-size random weights made directly in GPU memory, for benchmarks without an 81 GB file.
//
// `magnetar bench --synthetic flash` needs the weights of DeepSeek V4 Flash (or Pro) in their
// stored types, not their values: a GEMV reads the same bytes whatever they are. Writing such a
// model with `magnetar synth` and uploading it costs a file as large as the model and a host copy
// of it; here every tensor of the inventory (model/tensor_layout.h, in the storage types of
// synth::storage_type for the chosen mix) is filled on the device by the kernels of
// random_fill.cuh, with the spreads `magnetar synth` uses (synth::distribution_for), so activations
// stay finite through all the layers exactly as in a synthesized file. Quantized blocks hold random
// codes and a block scale chosen so that the decoded values have the wanted RMS; the RMS of one
// unit of scale is measured per type once, by decoding a sample of device-made blocks with the CPU
// decoder.
//
// The result is a model::ModelWeights whose matrices point into device memory (upload_weights
// adopts them: UploadOptions::adopt_device_matrices) and whose small vectors and hash-routing
// tables are host arrays, as bind_weights would give them. When the routed experts do not fit in
// device memory they are generated on the device, one tensor at a time, and copied into host memory
// that the expert cache (expert_cache.h) then page-locks and serves, as it does for a file's
// mapping. The MTP block is not made: the CUDA backend does not run it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "model/tensor_layout.h"
#include "synth/synth_preset.h"

namespace magnetar::gpu {

struct SyntheticSpec {
  synth::QuantMix mix = synth::QuantMix::kQ2;
  uint64_t seed = 42;
};

// Page-aligned anonymous host memory (mmap), released on destruction.
class HostBuffer {
 public:
  explicit HostBuffer(size_t bytes);
  ~HostBuffer();
  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&&) = delete;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

// Where one tensor of the inventory was made, in its stored form.
struct PlacedTensor {
  const model::ExpectedTensor* tensor = nullptr;
  quant::GgmlType type = quant::GgmlType::kF32;  // vectors: F32, as bind_weights decodes them
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  bool on_device = false;
};

// The weights and everything they point into. Must outlive the DeviceModelWeights adopted from it
// and any ExpertCache serving its host experts.
struct SyntheticWeights {
  model::ModelWeights weights;
  std::vector<model::ExpectedTensor> tensors;   // owns the names the weights point to
  std::vector<PlacedTensor> placed;             // every tensor, by name (tests write them out)
  std::deque<DeviceArray<uint8_t>> device;      // matrices (and routed experts on the device)
  std::deque<HostBuffer> host_experts;          // routed experts, when on the host
  std::deque<std::vector<float>> vectors;       // norms, scales, biases (copied into weights)
  std::deque<std::vector<int32_t>> token_maps;  // hash-routing tables
};

// What upload_weights would put in device memory for this model (weight_bytes' accounting).
WeightBytes synthetic_weight_bytes(const model::ModelConfig& config, const SyntheticSpec& spec);

// Makes the weights on the current device. Throws model::ConfigError for an invalid config,
// std::invalid_argument for a type the generator cannot fill and std::runtime_error on CUDA
// failures (out of memory) or when host memory cannot be mapped.
std::unique_ptr<SyntheticWeights> make_synthetic_weights(const model::ModelConfig& config,
                                                         const SyntheticSpec& spec,
                                                         bool experts_on_host, bool progress);

// One tensor's stored bytes made on the device by the generator (exposed for tests): `rows` rows
// of `cols` values of `type`, with decoded values of mean `mean` and RMS about `stddev` around it.
// `stream` selects the random stream. Throws std::invalid_argument for an unsupported type.
DeviceArray<uint8_t> make_random_tensor(quant::GgmlType type, int64_t cols, int64_t rows,
                                        float mean, float stddev, uint64_t seed, uint64_t stream);

}  // namespace magnetar::gpu
