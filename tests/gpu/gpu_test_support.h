// Shared helpers for tests/gpu: skip cleanly without a device, own device memory as a typed
// buffer filled from / read back into std::vector, random inputs, and element-wise comparison.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/device.h"
#include "kernels/core/memory.h"
#include "kernels/core/stream.h"

// Ends the current test case (it must return void) with "SKIPPED: no CUDA device" on stdout
// when no device is usable; CTest reports such a test as skipped.
#define DRGRAD_REQUIRE_GPU()                               \
  do {                                                     \
    if (::drgrad::kernels::cuda_device_count() == 0) {     \
      std::cout << "SKIPPED: no CUDA device" << std::endl; \
      return;                                              \
    }                                                      \
  } while (0)

namespace drgrad::gpu_test {

// The context of device 0 on the default stream.
inline kernels::Context cuda_context() {
  kernels::Context context;
  context.device = kernels::Device::cuda(0);
  return context;
}

// `size` elements of T on a CUDA device, released when the buffer goes out of scope. The
// allocation and uploads are stream-ordered on the current stream (kernels/core/memory.h); the
// buffer waits for them before returning, so that a test may hand the buffer to an op on any
// stream, including a non-blocking one. Reading back waits for earlier work on the current
// stream.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t size, kernels::Device device = kernels::Device::cuda(0))
      : device_(device),
        size_(size),
        data_(static_cast<T*>(kernels::allocate(device, size * sizeof(T)))) {
    kernels::synchronize_stream(device_, kernels::current_stream(device_));
  }
  explicit DeviceBuffer(const std::vector<T>& host,
                        kernels::Device device = kernels::Device::cuda(0))
      : DeviceBuffer(host.size(), device) {
    upload(host);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : device_(other.device_),
        size_(std::exchange(other.size_, 0)),
        data_(std::exchange(other.data_, nullptr)) {}
  ~DeviceBuffer() {
    try {
      kernels::release(device_, data_);
    } catch (...) {  // a destructor must not throw; the test has already failed elsewhere
    }
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }

  // Overwrites the buffer with `host` (sizes must match).
  void upload(const std::vector<T>& host) {
    if (host.size() != size_) {
      throw std::invalid_argument("DeviceBuffer::upload: " + std::to_string(host.size()) +
                                  " elements into a buffer of " + std::to_string(size_));
    }
    kernels::copy_bytes(device_, data_, kernels::Device::cpu(), host.data(), size_ * sizeof(T));
    kernels::synchronize_stream(device_, kernels::current_stream(device_));
  }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    kernels::copy_bytes(kernels::Device::cpu(), host.data(), device_, data_, size_ * sizeof(T));
    return host;
  }

 private:
  kernels::Device device_;
  std::size_t size_ = 0;
  T* data_ = nullptr;
};

// Uniform values in [low, high).
inline std::vector<float> random_floats(std::mt19937& random, std::size_t n, float low,
                                        float high) {
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(n);
  for (float& value : values) value = distribution(random);
  return values;
}

// How far `got` is from `expected`, element by element: an element is a mismatch when
// |got - expected| > absolute + relative * |expected| (or exactly one of them is NaN).
struct Closeness {
  std::size_t mismatches = 0;
  std::size_t worst_index = 0;
  double worst_difference = 0.0;
  bool sizes_differ = false;
};

template <typename T>
Closeness compare_close(const std::vector<T>& got, const std::vector<T>& expected, double relative,
                        double absolute) {
  Closeness result;
  if (got.size() != expected.size()) {
    result.sizes_differ = true;
    return result;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double a = double(got[i]), b = double(expected[i]);
    if (std::isnan(a) && std::isnan(b)) continue;
    const double difference = std::isnan(a) || std::isnan(b) ? INFINITY : std::abs(a - b);
    if (difference > result.worst_difference) {
      result.worst_difference = difference;
      result.worst_index = i;
    }
    if (!(difference <= absolute + relative * std::abs(b))) ++result.mismatches;
  }
  return result;
}

inline std::ostream& operator<<(std::ostream& out, const Closeness& closeness) {
  if (closeness.sizes_differ) return out << "sizes differ";
  return out << closeness.mismatches << " mismatches, worst |difference| "
             << closeness.worst_difference << " at index " << closeness.worst_index;
}

}  // namespace drgrad::gpu_test
