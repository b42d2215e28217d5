// Routed experts that do not fit in device memory (the H100 case of cuda-design.md §6.2, in its
// simplest form): they stay in host memory, page-locked when the system allows, and are copied on
// demand into a fixed pool of device slots, least recently used first out.
//
// One slot holds one expert of one layer: its gate, up and down matrices back to back. After the
// router of a layer has chosen, make_resident() reads the chosen ids back to the host, copies the
// missing experts into slots and rewrites the layer's expert tables (DeviceExperts::table), so the
// expert kernels find every chosen expert in device memory. The pool holds at least one whole
// layer, so any routing of any batch fits.
//
// Correctness first: the id read-back synchronizes the stream once per layer and copies are not
// overlapped with compute; prefetching and zero-copy reads are for later.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "backend/cuda/device_array.h"
#include "backend/cuda/device_weights.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace magnetar::gpu {

class ExpertCache {
 public:
  // Serves the routed experts of `host` (bound to a file that outlives the cache) for `weights`,
  // whose expert tables it owns from now on, with as many slots as `device_bytes` holds. Throws
  // std::runtime_error when that is less than one layer's experts.
  ExpertCache(const model::ModelWeights& host, DeviceModelWeights& weights, size_t device_bytes);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  // Makes the experts named by the n ids at `device_ids` resident for `layer`. Waits for `stream`
  // (the ids are read on the host); the copies are enqueued on it.
  void make_resident(int layer, const int32_t* device_ids, int64_t n, cudaStream_t stream);

  int64_t slots() const { return static_cast<int64_t>(slot_owner_.size()); }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }
  bool pinned() const { return !registered_.empty(); }

 private:
  struct Projection {
    const uint8_t* host = nullptr;  // expert 0's matrix; expert e at host + e * bytes
    size_t bytes = 0;
    DeviceExperts* device = nullptr;  // the layer's table in the weights
  };
  struct Layer {
    Projection projections[3];                   // gate, up, down
    DeviceArray<const uint8_t*> tables[3];       // device tables the kernels read
    std::vector<const uint8_t*> host_tables[3];  // their host copies
    std::vector<int64_t> slot_of;                // per expert: its slot, or -1
  };

  std::vector<Layer> layers_;
  size_t slot_bytes_ = 0;
  DeviceArray<uint8_t> pool_;
  std::vector<std::pair<int, int64_t>> slot_owner_;  // (layer, expert), or (-1, -1) when free
  std::vector<uint64_t> slot_used_;                  // last use, by a call counter
  uint64_t calls_ = 0;
  std::vector<int32_t> ids_;
  std::vector<void*> registered_;  // host ranges page-locked by cudaHostRegister
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

}  // namespace magnetar::gpu
