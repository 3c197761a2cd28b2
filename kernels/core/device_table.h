// A table of plain records (segments of a multi-tensor kernel: pointers and lengths) built on the
// host and mirrored once on the device a kernel runs on, so that one launch can walk every
// parameter of a group. Built when the parameters change, not every step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/core/device.h"
#include "kernels/core/memory.h"

namespace drgrad::kernels {

// Owns a host copy of the records and, on a CUDA device, a device copy made at construction
// (allocated and uploaded on the current stream, so kernels on that stream, or on streams ordered
// after it, may read it at once). data() is what a kernel on `device` reads: the host vector's
// storage on the CPU, the device copy on CUDA. Move-only; the device copy is released with the
// table.
template <typename Record>
class DeviceTable {
  static_assert(std::is_trivially_copyable_v<Record>, "table records are copied byte for byte");

 public:
  DeviceTable() = default;
  DeviceTable(Device device, std::vector<Record> records)
      : device_(device), host_(std::move(records)) {
    if (device_.is_cuda() && !host_.empty()) {
      const std::size_t bytes = host_.size() * sizeof(Record);
      device_copy_ = allocate(device_, bytes);
      try {
        copy_bytes(device_, device_copy_, Device::cpu(), host_.data(), bytes);
      } catch (...) {  // a throwing constructor runs no destructor: give the copy back here
        try {
          release(device_, device_copy_);
        } catch (...) {  // the device is already failing: report the first error
        }
        throw;
      }
    }
  }
  DeviceTable(const DeviceTable&) = delete;
  DeviceTable& operator=(const DeviceTable&) = delete;
  DeviceTable(DeviceTable&& other) noexcept { swap(other); }
  DeviceTable& operator=(DeviceTable&& other) noexcept {
    DeviceTable moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~DeviceTable() {
    if (device_copy_ != nullptr) {
      try {
        release(device_, device_copy_);
      } catch (...) {  // a destructor must not throw; the device is already failing
      }
    }
  }

  Device device() const { return device_; }
  std::int64_t size() const { return static_cast<std::int64_t>(host_.size()); }
  bool empty() const { return host_.empty(); }
  const std::vector<Record>& host() const { return host_; }
  // The records where a kernel on device() reads them.
  const Record* data() const {
    return device_.is_cuda() ? static_cast<const Record*>(device_copy_) : host_.data();
  }

 private:
  void swap(DeviceTable& other) noexcept {
    std::swap(device_, other.device_);
    std::swap(host_, other.host_);
    std::swap(device_copy_, other.device_copy_);
  }

  Device device_;
  std::vector<Record> host_;
  void* device_copy_ = nullptr;
};

}  // namespace drgrad::kernels
