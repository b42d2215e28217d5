// Host-to-device copies at PCIe speed, for the weight upload (device_weights.h).
//
// A plain cudaMemcpy from pageable memory (the mmap'ed GGUF file) is slow: the driver stages it
// through its own small pinned buffers, one copy at a time, and the page faults of the mapping
// sit on the critical path, on one core. HostUpload instead pipelines every copy through a few
// pinned staging buffers of its own:
//
//   source (pageable) --several threads--> staging buffer k --cudaMemcpyAsync--> device
//
// Sources are cut into pieces that fill the staging buffers in turn (small sources share a
// buffer); a piece is copied into its buffer by several host threads at once (slices of the
// piece), so that several cores take the page faults, and then sent on a dedicated stream. When
// a buffer is full, an event is recorded after its last copy, and the buffer is filled again only
// once that event has completed. So the host copy of buffer k+1 overlaps the DMA of buffer k, and
// the upload runs at the lower of the two rates instead of their harmonic sum.
//
// Destinations must not be read before finish() returns. When the pinned buffers cannot be
// allocated, HostUpload warns once on stderr and falls back to synchronous cudaMemcpy.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace magnetar::gpu {

struct HostUploadOptions {
  size_t staging_bytes = size_t{64} << 20;  // per buffer
  int buffers = 4;                          // 0: no staging, synchronous cudaMemcpy
  int threads = 0;                          // host copy threads; 0: min(8, hardware threads)
};

// The staging for about `total` bytes: 4 buffers of up to 64 MiB, smaller for a small total so
// that a small model does not pin 256 MiB of host memory for nothing; none for 0 bytes.
HostUploadOptions staging_for(size_t total);

// What an upload took, for the load-time report.
struct UploadStats {
  size_t bytes = 0;     // bytes copied to the device
  double seconds = 0;   // wall time, device allocations included
  bool staged = false;  // through the pinned pipeline (false: plain cudaMemcpy)

  double gb_per_s() const { return seconds > 0 ? bytes / seconds / 1e9 : 0.0; }
};

class HostUpload {
 public:
  // Allocates the staging buffers, the stream, the events and the threads. Throws
  // std::runtime_error for a CUDA failure other than the pinned allocation.
  explicit HostUpload(const HostUploadOptions& options);
  // Waits for the copies in flight (errors are left to finish(), which the caller should call).
  ~HostUpload();
  HostUpload(const HostUpload&) = delete;
  HostUpload& operator=(const HostUpload&) = delete;

  // Copies n bytes from host memory at `src` to device memory at `dst`. When it returns, `src`
  // may be freed or changed; `dst` holds the bytes only after finish(). Throws std::runtime_error
  // on a CUDA failure.
  void copy(void* dst, const void* src, size_t n);
  // Waits until every copy so far is in device memory; the object may be reused afterwards.
  // Throws std::runtime_error on a CUDA failure.
  void finish();

  bool staged() const { return !buffers_.empty(); }

 private:
  class Workers;  // the host copy threads
  struct Staging {
    uint8_t* host = nullptr;        // pinned
    cudaEvent_t drained = nullptr;  // recorded after the buffer's last copy
    bool in_flight = false;         // drained is recorded and may not have completed
  };

  // Ends the current buffer: records its event and moves to the next buffer.
  void seal();
  void release() noexcept;

  size_t staging_bytes_ = 0;
  std::vector<Staging> buffers_;
  size_t current_ = 0;  // the buffer being filled
  size_t fill_ = 0;     // bytes used in it
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Workers> workers_;
};

}  // namespace magnetar::gpu
