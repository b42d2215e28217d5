// Owning handles for device memory, so that every allocation of the CUDA backend is freed on every
// path, exceptions included.
//
// DeviceArray<T> is a fixed-size array of T in device memory (cudaMalloc, at least 256-byte
// aligned). Copies to and from the host are synchronous: the backend's forward pass owns the only
// stream that writes these arrays and waits for it before its results are read, so callers outside
// a forward call see finished data.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.h"

namespace magnetar::gpu {

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t count) : count_(count) {
    if (count > 0) MAGNETAR_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()));
  }
  // An array holding a copy of `values`.
  explicit DeviceArray(std::span<const T> values) : DeviceArray(values.size()) { upload(values); }
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceArray(DeviceArray&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  // Copies values into the first values.size() elements.
  void upload(std::span<const T> values) {
    if (values.empty()) return;
    MAGNETAR_CUDA_CHECK(
        cudaMemcpy(data_, values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  // The first `count` elements (all by default).
  std::vector<T> download(size_t count) const {
    std::vector<T> out(count);
    if (count > 0) {
      MAGNETAR_CUDA_CHECK(cudaMemcpy(out.data(), data_, count * sizeof(T), cudaMemcpyDeviceToHost));
    }
    return out;
  }
  std::vector<T> download() const { return download(count_); }
  // A new array with the same contents.
  DeviceArray clone() const {
    DeviceArray copy(count_);
    if (count_ > 0) {
      MAGNETAR_CUDA_CHECK(cudaMemcpy(copy.data_, data_, bytes(), cudaMemcpyDeviceToDevice));
    }
    return copy;
  }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

// Makes `array` hold at least `count` elements, reallocating (without keeping the contents) when it
// is smaller. Scratch buffers of the forward pass grow this way and are reused across calls; the
// caller has synchronized the stream that last used the old memory.
template <typename T>
T* ensure_size(DeviceArray<T>& array, size_t count) {
  if (array.size() < count) {
    array = DeviceArray<T>();  // free first: the old and new buffers need not fit together
    array = DeviceArray<T>(count);
  }
  return array.data();
}

}  // namespace magnetar::gpu
