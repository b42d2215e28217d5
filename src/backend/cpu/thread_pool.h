// A fixed set of worker threads that split loops into contiguous ranges.
//
// The CPU backend parallelizes one loop at a time (the rows of a matrix, the tokens of a chunk,
// the heads of attention), so the pool offers exactly that: parallel_for blocks until every range
// is done, the calling thread works too, and the first exception thrown by any range is rethrown
// in the caller.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace magnetar::cpu {

class ThreadPool {
 public:
  // 0 threads: one per hardware thread.
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), at least `grain` items each (the
  // last may be shorter). Not reentrant: fn must not call parallel_for on the same pool.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop(unsigned index);
  void run_ranges(unsigned index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  unsigned pending_ = 0;
  bool stop_ = false;
  // The current job.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 0;
  std::exception_ptr error_;
};

}  // namespace magnetar::cpu
