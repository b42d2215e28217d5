#include "backend/cuda/host_upload.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "backend/cuda/cuda_check.h"

namespace magnetar::gpu {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
// Below this, waking the threads costs more than the copy: the calling thread copies alone.
constexpr size_t kParallelBytes = kMiB;
// Slices start on page boundaries of the piece, so that two threads rarely fault the same page.
constexpr size_t kSliceAlign = 4096;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

HostUploadOptions staging_for(size_t total) {
  HostUploadOptions o;
  if (total == 0) {
    o.buffers = 0;
    return o;
  }
  o.staging_bytes = std::min(o.staging_bytes, round_up(total / o.buffers + 1, kMiB));
  return o;
}

// Helper threads that copy one piece together with the calling thread, slice by slice: copy()
// publishes the piece under the mutex, bumps the generation, copies slice 0 itself and waits
// until every helper has done its slice (helper i copies slice i + 1, possibly empty).
class HostUpload::Workers {
 public:
  explicit Workers(int threads) {
    try {
      for (int i = 1; i < threads; ++i) helpers_.emplace_back([this, i] { loop(i); });
    } catch (...) {  // a thread that cannot start: the started ones must be joined, not dropped
      stop();
      throw;
    }
  }
  ~Workers() { stop(); }

  void copy(uint8_t* dst, const uint8_t* src, size_t n) {
    if (helpers_.empty() || n < kParallelBytes) {
      std::memcpy(dst, src, n);
      return;
    }
    const size_t slice = round_up((n + helpers_.size()) / (helpers_.size() + 1), kSliceAlign);
    {
      std::lock_guard lock(mutex_);
      dst_ = dst;
      src_ = src;
      n_ = n;
      slice_ = slice;
      pending_ = helpers_.size();
      ++generation_;
    }
    wake_.notify_all();
    std::memcpy(dst, src, std::min(slice, n));
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : helpers_) t.join();
  }

  void loop(int index) {
    uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const size_t begin = index * slice_;
      uint8_t* dst = dst_;
      const uint8_t* src = src_;
      const size_t n = begin < n_ ? std::min(slice_, n_ - begin) : 0;
      lock.unlock();
      if (n > 0) std::memcpy(dst + begin, src + begin, n);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  size_t pending_ = 0;
  bool stop_ = false;
  uint8_t* dst_ = nullptr;
  const uint8_t* src_ = nullptr;
  size_t n_ = 0;
  size_t slice_ = 0;
  std::vector<std::thread> helpers_;
};

HostUpload::HostUpload(const HostUploadOptions& options) : staging_bytes_(options.staging_bytes) {
  if (options.buffers <= 0 || options.staging_bytes == 0) return;
  try {
    buffers_.resize(static_cast<size_t>(options.buffers));
    cudaError_t pinned = cudaSuccess;
    for (Staging& b : buffers_) {
      pinned =
          cudaHostAlloc(reinterpret_cast<void**>(&b.host), staging_bytes_, cudaHostAllocDefault);
      if (pinned != cudaSuccess) break;
      MAGNETAR_CUDA_CHECK(cudaEventCreateWithFlags(&b.drained, cudaEventDisableTiming));
    }
    if (pinned != cudaSuccess) {
      // Not fatal: plain copies still work (and report a broken device themselves). The failed
      // allocation is not sticky; clearing it keeps later cudaGetLastError() checks meaningful.
      cudaGetLastError();
      std::fprintf(stderr,
                   "magnetar: warning: cannot pin %zu MiB of staging memory (%s): host-to-device "
                   "copies fall back to plain cudaMemcpy (slower)\n",
                   buffers_.size() * staging_bytes_ / kMiB, cudaGetErrorName(pinned));
      release();
      return;
    }
    // Non-blocking: the copies need not wait for, nor hold up, work on the legacy default stream.
    MAGNETAR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
    workers_ = std::make_unique<Workers>(
        options.threads > 0 ? options.threads : static_cast<int>(std::min(8u, hardware)));
  } catch (...) {
    release();
    throw;
  }
}

HostUpload::~HostUpload() { release(); }

void HostUpload::release() noexcept {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);  // nothing may still read the buffers
  workers_.reset();
  for (Staging& b : buffers_) {
    if (b.drained != nullptr) cudaEventDestroy(b.drained);
    if (b.host != nullptr) cudaFreeHost(b.host);
  }
  buffers_.clear();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

void HostUpload::copy(void* dst, const void* src, size_t n) {
  if (n == 0) return;
  if (!staged()) {
    MAGNETAR_CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
    return;
  }
  auto* to = static_cast<uint8_t*>(dst);
  const auto* from = static_cast<const uint8_t*>(src);
  while (n > 0) {
    Staging& b = buffers_[current_];
    if (b.in_flight) {  // only when fill_ == 0: a buffer is sealed when it is left
      MAGNETAR_CUDA_CHECK(cudaEventSynchronize(b.drained));
      b.in_flight = false;
    }
    const size_t piece = std::min(n, staging_bytes_ - fill_);
    workers_->copy(b.host + fill_, from, piece);
    MAGNETAR_CUDA_CHECK(
        cudaMemcpyAsync(to, b.host + fill_, piece, cudaMemcpyHostToDevice, stream_));
    fill_ += piece;
    to += piece;
    from += piece;
    n -= piece;
    if (fill_ == staging_bytes_) seal();
  }
}

void HostUpload::seal() {
  Staging& b = buffers_[current_];
  MAGNETAR_CUDA_CHECK(cudaEventRecord(b.drained, stream_));
  b.in_flight = true;
  current_ = (current_ + 1) % buffers_.size();
  fill_ = 0;
}

void HostUpload::finish() {
  if (!staged()) return;
  if (fill_ > 0) seal();
  MAGNETAR_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (Staging& b : buffers_) b.in_flight = false;
}

}  // namespace magnetar::gpu
