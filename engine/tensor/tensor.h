// Tensor: a shaped, typed block of memory on one device, shared by reference. Layers and models
// pass these around; the ops in kernels/ see only their raw pointers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/core/device.h"

namespace drgrad::engine {

using kernels::Device;

enum class DType { kFloat32, kFloat64, kInt64 };

template <typename T>
constexpr DType dtype_of() {
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t>,
      "tensors hold float, double or int64");
  if constexpr (std::is_same_v<T, float>) return DType::kFloat32;
  if constexpr (std::is_same_v<T, double>) return DType::kFloat64;
  return DType::kInt64;
}
std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

using Shape = std::vector<std::int64_t>;
std::string shape_to_string(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory of the given shape on `device`.
  Tensor(Shape shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::cpu());
  // A CPU tensor holding a copy of `values` (size must equal the shape's element count).
  template <typename T>
  static Tensor from_vector(Shape shape, const std::vector<T>& values);

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int axis) const { return shape_.at(axis < 0 ? shape_.size() + axis : axis); }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  bool defined() const { return storage_ != nullptr; }

  // Typed pointers; throw std::logic_error when T does not match the tensor's dtype.
  template <typename T>
  T* data();
  template <typename T>
  const T* data() const;

  void zero_();
  // Same memory, another shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // A view of `count` entries along the first axis starting at `begin`, sharing this memory.
  Tensor narrow_first(std::int64_t begin, std::int64_t count) const;
  // A deep copy, optionally on another device.
  Tensor clone() const;
  Tensor to(Device device) const;
  void copy_from(const Tensor& source);  // same shape and dtype, any devices
  // Copies bytes() of ordinary host memory into this tensor, on whatever device it is.
  void copy_from_host(const void* host);
  // Makes this a tensor of `shape` and `dtype` on `device`: keeps its memory when it already is
  // one (so that a reader of a fixed buffer, such as a captured CUDA graph, goes on reading it),
  // else allocates. The contents are whatever was there.
  void ensure(const Shape& shape, DType dtype, Device device);
  // Copies to the host and returns the values (for tests, metrics, checkpoints).
  template <typename T>
  std::vector<T> to_vector() const;

 private:
  struct Storage;
  Shape shape_;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::kFloat32;
  Device device_;
  std::shared_ptr<Storage> storage_;
  void* data_ = nullptr;
  void check_dtype(DType requested) const;
};

template <typename T>
T* Tensor::data() {
  check_dtype(dtype_of<T>());
  return static_cast<T*>(data_);
}

template <typename T>
const T* Tensor::data() const {
  check_dtype(dtype_of<T>());
  return static_cast<const T*>(data_);
}

}  // namespace drgrad::engine
