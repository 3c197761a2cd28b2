// Streams: the calling thread's current stream per device (where ops with no stream of their own,
// tensor allocations, frees and copies are ordered), an owned stream, and a small page-locked
// buffer that device results are copied into without stopping the host.
#pragma once

#include <cstddef>
#include <utility>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// The calling thread's current stream on `device` (a cudaStream_t kept opaque): what a Context
// with stream == nullptr launches on, and where kernels/core/memory.h allocates, frees, fills and
// copies. nullptr (the CUDA legacy default stream) until set_current_stream says otherwise; always
// nullptr for the CPU. Per thread and per device index, so threads never see each other's streams.
// Since tensors allocate, copy and free on the current stream while ops launch on their
// Context's stream, a Context that names a stream must be used while that stream is current (the
// trainer makes it so), or the two streams must be ordered with each other (the legacy default
// stream and blocking streams are; a non-blocking stream is not, and then the caller synchronises).
void* current_stream(Device device);
// Makes `stream` the calling thread's current stream on `device` (nullptr: back to the legacy
// default stream). Ignored for the CPU. The caller keeps the stream alive while it is current.
void set_current_stream(Device device, void* stream);

// Makes a stream current on a device for the guard's lifetime and restores the previous one.
class CurrentStreamGuard {
 public:
  CurrentStreamGuard(Device device, void* stream)
      : device_(device), previous_(current_stream(device)) {
    set_current_stream(device, stream);
  }
  ~CurrentStreamGuard() { set_current_stream(device_, previous_); }
  CurrentStreamGuard(const CurrentStreamGuard&) = delete;
  CurrentStreamGuard& operator=(const CurrentStreamGuard&) = delete;

 private:
  Device device_;
  void* previous_;
};

// A stream of its own on a CUDA device, created with default flags: it is a blocking stream, so
// work on the legacy default stream waits for it and it waits for the legacy default stream, and
// anything still issued there (by code that was handed no stream) stays correctly ordered with
// it. On the CPU it holds nothing and get() is nullptr. Destroying it does not wait for its work;
// the driver releases the stream when the work is done. Move-only.
class Stream {
 public:
  Stream() = default;
  explicit Stream(Device device);
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Device device() const { return device_; }
  void* get() const { return stream_; }

 private:
  Device device_;
  void* stream_ = nullptr;
};

// Blocks the host until all work issued so far on `stream` of `device` is done (nothing on the
// CPU, whose ops finish before they return).
void synchronize_stream(Device device, void* stream);

// A small host buffer that a device array is copied into asynchronously, and the marker of when
// the copy has landed. On CUDA the buffer is page-locked (cudaMallocHost), so cudaMemcpyAsync
// returns at once and the host goes on issuing work; an event recorded after the copy says when
// the bytes are there. On the CPU start() copies at once and the bytes are ready when it returns.
// One copy in flight at a time: start() again only after wait() (or accept that the previous
// copy is abandoned: start() waits for it first, so the buffer is never written twice at once).
class HostReadback {
 public:
  HostReadback() = default;
  // Up to `capacity` bytes, for copies from `device`.
  HostReadback(Device device, std::size_t capacity);
  ~HostReadback();
  HostReadback(const HostReadback&) = delete;
  HostReadback& operator=(const HostReadback&) = delete;
  HostReadback(HostReadback&& other) noexcept { swap(other); }
  HostReadback& operator=(HostReadback&& other) noexcept {
    HostReadback moved(std::move(other));
    swap(moved);
    return *this;
  }

  // Issues the copy of `bytes` (at most the capacity; std::invalid_argument beyond it) from
  // `source` (on the device) on `stream` (nullptr: the current stream) and marks its end.
  // Inside a CUDA graph capture (kernels/core/cuda_graph.h) the copy and its event become nodes
  // of the graph, which issue them on every launch; the copy counts as pending from start() on,
  // so launch the graph before ready()/wait(), and call expect_copy() after each later launch.
  // Throws GraphCaptureError when called inside a capture while an earlier copy is still pending
  // (waiting for it would be a host synchronisation): wait() for it before the capture.
  void start(const void* source, std::size_t bytes, void* stream = nullptr);
  // A replay of a CUDA graph whose capture called start() has issued the copy again: marks the
  // copy pending so that ready() and wait() look at the event the replay recorded. Nothing else
  // (no effect on the CPU, whose copies are never replayed).
  void expect_copy();
  // True when a copy was started and wait() has not been called since.
  bool pending() const { return pending_; }
  // True when the copy has landed (never blocks).
  bool ready() const;
  // Blocks until the copy has landed and returns the buffer (valid until the next start()).
  // Without a pending copy it returns the buffer as the last copy left it.
  const void* wait();
  std::size_t capacity() const { return capacity_; }

 private:
  void swap(HostReadback& other) noexcept {
    std::swap(device_, other.device_);
    std::swap(capacity_, other.capacity_);
    std::swap(host_, other.host_);
    std::swap(event_, other.event_);
    std::swap(pending_, other.pending_);
  }
  Device device_;
  std::size_t capacity_ = 0;
  void* host_ = nullptr;   // page-locked on CUDA, ordinary memory on the CPU
  void* event_ = nullptr;  // cudaEvent_t on CUDA
  bool pending_ = false;
};

namespace cuda {
void* create_stream(int device_index);
void destroy_stream(int device_index, void* stream);
void synchronize_stream(int device_index, void* stream);
void* allocate_pinned(std::size_t bytes);
void release_pinned(void* pointer);
void* create_event(int device_index);
void destroy_event(void* event);
// cudaMemcpyAsync device -> host, then cudaEventRecord(event) on the same stream (during a stream
// capture an external event record node, cudaEventRecordExternal, so that the host can wait for
// it after each replay).
void copy_to_host_and_record(void* host, const void* device_source, std::size_t bytes, void* stream,
                             void* event);
// True when the event's work is done. A "not ready" answer leaves no error behind for later
// checks (cudaPeekAtLastError after a launch).
bool event_done(void* event);
void wait_event(void* event);
}  // namespace cuda

}  // namespace drgrad::kernels
