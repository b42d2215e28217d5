#include "backend/cuda/expert_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"

namespace magnetar::gpu {
namespace {

size_t expert_bytes(const model::WeightMatrix& m) {
  return static_cast<size_t>(m.rows * m.row_bytes);
}

}  // namespace

ExpertCache::ExpertCache(const model::ModelWeights& host, DeviceModelWeights& weights,
                         size_t device_bytes) {
  int64_t max_experts = 0;
  for (size_t l = 0; l < host.layers.size(); ++l) {
    const model::BlockWeights& hw = host.layers[l];
    DeviceBlock& dw = weights.layers[l];
    Layer& layer = layers_.emplace_back();
    const model::WeightMatrix* mats[3] = {&hw.gate_exps, &hw.up_exps, &hw.down_exps};
    DeviceExperts* dev[3] = {&dw.gate_exps, &dw.up_exps, &dw.down_exps};
    size_t slot = 0;
    for (int p = 0; p < 3; ++p) {
      layer.projections[p] = {mats[p]->data, expert_bytes(*mats[p]), dev[p]};
      slot += expert_bytes(*mats[p]);
      layer.host_tables[p].assign(static_cast<size_t>(mats[p]->experts), nullptr);
      layer.tables[p] = DeviceArray<const uint8_t*>(layer.host_tables[p].size());
      layer.tables[p].upload(layer.host_tables[p]);
      dev[p]->table = layer.tables[p].data();
    }
    layer.slot_of.assign(static_cast<size_t>(hw.gate_exps.experts), -1);
    slot_bytes_ = std::max(slot_bytes_, (slot + 255) / 256 * 256);
    max_experts = std::max(max_experts, hw.gate_exps.experts);
  }
  const int64_t n_slots = slot_bytes_ == 0 ? 0 : static_cast<int64_t>(device_bytes / slot_bytes_);
  if (n_slots < max_experts) {
    throw std::runtime_error(
        "not enough device memory for the expert cache: " + std::to_string(device_bytes >> 20) +
        " MiB hold " + std::to_string(n_slots) + " experts, one layer needs " +
        std::to_string(max_experts));
  }
  pool_ = DeviceArray<uint8_t>(static_cast<size_t>(n_slots) * slot_bytes_);
  slot_owner_.assign(static_cast<size_t>(n_slots), {-1, -1});
  slot_used_.assign(static_cast<size_t>(n_slots), 0);

  // Page-lock each layer's expert tensors where the system allows it, so that the copies run at
  // full bus speed; a mapping that cannot be registered is copied from pageable memory instead.
  for (Layer& layer : layers_) {
    for (const Projection& p : layer.projections) {
      void* start = const_cast<uint8_t*>(p.host);
      const size_t bytes = p.bytes * layer.slot_of.size();
      if (cudaHostRegister(start, bytes, cudaHostRegisterReadOnly) == cudaSuccess) {
        registered_.push_back(start);
      } else {
        cudaGetLastError();  // clear it: the fallback is fine
      }
    }
  }
}

ExpertCache::~ExpertCache() {
  for (void* p : registered_) cudaHostUnregister(p);
}

void ExpertCache::make_resident(int layer_index, const int32_t* device_ids, int64_t n,
                                cudaStream_t stream) {
  Layer& layer = layers_.at(static_cast<size_t>(layer_index));
  ids_.resize(static_cast<size_t>(n));
  MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(ids_.data(), device_ids, ids_.size() * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, stream));
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream));
  const uint64_t now = ++calls_;
  bool changed = false;
  for (int32_t e : ids_) {
    if (e < 0 || static_cast<size_t>(e) >= layer.slot_of.size()) {
      throw std::runtime_error("expert cache: routing chose expert " + std::to_string(e) +
                               " of layer " + std::to_string(layer_index));
    }
    int64_t& slot = layer.slot_of[e];
    if (slot >= 0) {
      if (slot_used_[slot] != now) ++hits_;
      slot_used_[slot] = now;
      continue;
    }
    ++misses_;
    // The least recently used slot; slots used by this call are never taken, and the pool holds
    // a whole layer, so one is always older.
    const auto victim = static_cast<int64_t>(
        std::min_element(slot_used_.begin(), slot_used_.end()) - slot_used_.begin());
    auto& [owner_layer, owner_expert] = slot_owner_[victim];
    if (owner_layer >= 0) layers_[owner_layer].slot_of[owner_expert] = -1;
    owner_layer = layer_index;
    owner_expert = e;
    slot = victim;
    slot_used_[victim] = now;
    uint8_t* dst = pool_.data() + victim * slot_bytes_;
    for (int p = 0; p < 3; ++p) {
      const Projection& proj = layer.projections[p];
      MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(dst, proj.host + e * proj.bytes, proj.bytes,
                                          cudaMemcpyHostToDevice, stream));
      layer.host_tables[p][e] = dst;
      dst += proj.bytes;
    }
    changed = true;
  }
  if (!changed) return;
  for (int p = 0; p < 3; ++p) {
    // The host tables change only after the next read-back has synchronized this stream, so the
    // asynchronous copy always reads the values written here.
    MAGNETAR_CUDA_CHECK(cudaMemcpyAsync(layer.tables[p].data(), layer.host_tables[p].data(),
                                        layer.host_tables[p].size() * sizeof(const uint8_t*),
                                        cudaMemcpyHostToDevice, stream));
  }
}

}  // namespace magnetar::gpu
