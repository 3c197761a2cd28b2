// Tensor storage and copies, through kernels/core/memory.h so that no device branch is needed.
#include "engine/tensor/tensor.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/core/memory.h"

namespace drgrad::engine {

struct Tensor::Storage {
  Device device;
  void* pointer = nullptr;
  Storage(Device d, std::size_t bytes) : device(d), pointer(kernels::allocate(d, bytes)) {}
  ~Storage() { kernels::release(device, pointer); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

std::size_t dtype_size(DType dtype) {
  return dtype == DType::kFloat32 ? 4 : 8;
}
const char* dtype_name(DType dtype) {
  return dtype == DType::kFloat32 ? "float32" : "float64";
}

std::string shape_to_string(const Shape& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return text + "]";
}

Tensor::Tensor(Shape shape, DType dtype, Device device)
    : shape_(std::move(shape)), dtype_(dtype), device_(device) {
  numel_ = 1;
  for (const auto extent : shape_) {
    if (extent < 0)
      throw std::invalid_argument("negative extent in shape " + shape_to_string(shape_));
    numel_ *= extent;
  }
  storage_ = std::make_shared<Storage>(device, bytes());
  data_ = storage_->pointer;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor tensor(std::move(shape), dtype, device);
  tensor.zero_();
  return tensor;
}

template <typename T>
Tensor Tensor::from_vector(Shape shape, const std::vector<T>& values) {
  Tensor tensor(std::move(shape), dtype_of<T>(), Device::cpu());
  if (static_cast<std::int64_t>(values.size()) != tensor.numel()) {
    throw std::invalid_argument("from_vector: " + std::to_string(values.size()) +
                                " values for shape " + shape_to_string(tensor.shape()));
  }
  kernels::copy_bytes(tensor.device_, tensor.data_, Device::cpu(), values.data(), tensor.bytes());
  return tensor;
}
template Tensor Tensor::from_vector<float>(Shape, const std::vector<float>&);
template Tensor Tensor::from_vector<double>(Shape, const std::vector<double>&);
template Tensor Tensor::from_vector<std::int64_t>(Shape, const std::vector<std::int64_t>&);

void Tensor::check_dtype(DType requested) const {
  if (requested != dtype_) {
    throw std::logic_error(std::string("tensor holds ") + dtype_name(dtype_) + ", asked for " +
                           dtype_name(requested));
  }
}

void Tensor::zero_() {
  kernels::zero_bytes(device_, data_, bytes());
}

Tensor Tensor::reshaped(Shape shape) const {
  std::int64_t count = 1;
  for (const auto extent : shape) count *= extent;
  if (count != numel_) {
    throw std::invalid_argument("cannot reshape " + shape_to_string(shape_) + " to " +
                                shape_to_string(shape));
  }
  Tensor view = *this;
  view.shape_ = std::move(shape);
  return view;
}

Tensor Tensor::narrow_first(std::int64_t begin, std::int64_t count) const {
  if (shape_.empty() || begin < 0 || count < 0 || begin + count > shape_[0]) {
    throw std::out_of_range("narrow_first(" + std::to_string(begin) + ", " + std::to_string(count) +
                            ") of " + shape_to_string(shape_));
  }
  Tensor view = *this;
  view.shape_[0] = count;
  view.numel_ = shape_[0] == 0 ? 0 : numel_ / shape_[0] * count;
  view.data_ = static_cast<char*>(data_) + static_cast<std::size_t>(begin) *
                                               (numel_ / std::max<std::int64_t>(shape_[0], 1)) *
                                               dtype_size(dtype_);
  return view;
}

Tensor Tensor::clone() const {
  return to(device_);
}

Tensor Tensor::to(Device device) const {
  Tensor copy(shape_, dtype_, device);
  kernels::copy_bytes(device, copy.data_, device_, data_, bytes());
  return copy;
}

void Tensor::copy_from(const Tensor& source) {
  if (source.shape_ != shape_ || source.dtype_ != dtype_) {
    throw std::invalid_argument("copy_from: " + shape_to_string(source.shape_) + " " +
                                dtype_name(source.dtype_) + " into " + shape_to_string(shape_) +
                                " " + dtype_name(dtype_));
  }
  kernels::copy_bytes(device_, data_, source.device_, source.data_, bytes());
}

void Tensor::copy_from_host(const void* host) {
  kernels::copy_bytes(device_, data_, Device::cpu(), host, bytes());
}

void Tensor::ensure(const Shape& shape, DType dtype, Device device) {
  if (!defined() || shape_ != shape || dtype_ != dtype || device_ != device) {
    *this = Tensor(shape, dtype, device);
  }
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  check_dtype(dtype_of<T>());
  std::vector<T> values(static_cast<std::size_t>(numel_));
  kernels::copy_bytes(Device::cpu(), values.data(), device_, data_, bytes());
  return values;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<std::int64_t> Tensor::to_vector<std::int64_t>() const;

}  // namespace drgrad::engine
