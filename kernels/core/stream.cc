// The calling thread's current streams, and the device-independent side of Stream and
// HostReadback (the CUDA calls are in stream_cuda.cu).
#include "kernels/core/stream.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/cuda_graph.h"

namespace drgrad::kernels {

namespace {
// Indexed by CUDA device index; grows on first use of a device by this thread.
std::vector<void*>& thread_streams() {
  thread_local std::vector<void*> streams;
  return streams;
}
}  // namespace

void* current_stream(Device device) {
  if (!device.is_cuda() || device.index < 0) return nullptr;
  const auto& streams = thread_streams();
  const auto index = static_cast<std::size_t>(device.index);
  return index < streams.size() ? streams[index] : nullptr;
}

void set_current_stream(Device device, void* stream) {
  if (!device.is_cuda()) return;
  if (device.index < 0) {
    throw std::invalid_argument("set_current_stream on " + device.to_string() +
                                ": device indices start at 0");
  }
  auto& streams = thread_streams();
  const auto index = static_cast<std::size_t>(device.index);
  if (index >= streams.size()) streams.resize(index + 1, nullptr);
  streams[index] = stream;
}

Stream::Stream(Device device) : device_(device) {
  if (device.is_cuda()) DRGRAD_CUDA_TWIN(stream_ = cuda::create_stream(device.index));
}

Stream::~Stream() {
  if (stream_ == nullptr) return;
#if defined(DRGRAD_WITH_CUDA)
  try {
    cuda::destroy_stream(device_.index, stream_);
  } catch (...) {  // a destructor must not throw; the device is already failing
  }
#endif
}

Stream::Stream(Stream&& other) noexcept
    : device_(other.device_), stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  Stream moved(std::move(other));
  std::swap(device_, moved.device_);
  std::swap(stream_, moved.stream_);
  return *this;
}

void synchronize_stream(Device device, void* stream) {
  if (device.is_cuda()) DRGRAD_CUDA_TWIN(cuda::synchronize_stream(device.index, stream));
}

HostReadback::HostReadback(Device device, std::size_t capacity)
    : device_(device), capacity_(capacity) {
  if (capacity == 0) return;
  if (device.is_cuda()) {
    DRGRAD_CUDA_TWIN(host_ = cuda::allocate_pinned(capacity);
                     event_ = cuda::create_event(device.index));
  } else {
    host_ = std::malloc(capacity);
    if (host_ == nullptr) throw std::bad_alloc();
  }
}

HostReadback::~HostReadback() {
  if (!device_.is_cuda()) {
    std::free(host_);
    return;
  }
#if defined(DRGRAD_WITH_CUDA)
  try {
    // A copy may still be landing in the page-locked buffer: let it finish before freeing it.
    if (pending_) cuda::wait_event(event_);
    if (event_ != nullptr) cuda::destroy_event(event_);
    if (host_ != nullptr) cuda::release_pinned(host_);
  } catch (...) {  // a destructor must not throw; the device is already failing
  }
#endif
}

void HostReadback::start(const void* source, std::size_t bytes, void* stream) {
  if (bytes > capacity_) {
    throw std::invalid_argument("HostReadback::start: " + std::to_string(bytes) +
                                " bytes asked into a buffer of " + std::to_string(capacity_));
  }
  const bool in_capture = capturing(device_);
  if (pending_) {
    if (in_capture) {
      throw GraphCaptureError(
          "HostReadback::start inside a CUDA graph capture while the previous copy into the "
          "same buffer is still pending: waiting for it is a host synchronisation, which a "
          "captured step cannot hold; wait() for it before the capture");
    }
    wait();
  }
  if (bytes == 0) return;
  if (device_.is_cuda()) {
    if (stream == nullptr) stream = current_stream(device_);
    DRGRAD_CUDA_TWIN(cuda::copy_to_host_and_record(host_, source, bytes, stream, event_));
    // Captured, the copy runs only when the graph is launched: pending from here on all the
    // same, so that the launch right after the capture is waited for like an eager step.
    pending_ = true;
  } else {
    std::memcpy(host_, source, bytes);
  }
}

void HostReadback::expect_copy() {
  if (device_.is_cuda() && event_ != nullptr) pending_ = true;
}

bool HostReadback::ready() const {
  if (!pending_) return true;
#if defined(DRGRAD_WITH_CUDA)
  return cuda::event_done(event_);
#else
  return true;
#endif
}

const void* HostReadback::wait() {
  if (pending_) {
    pending_ = false;
    DRGRAD_CUDA_TWIN(cuda::wait_event(event_));
  }
  return host_;
}

}  // namespace drgrad::kernels
