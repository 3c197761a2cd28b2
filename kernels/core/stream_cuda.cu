// CUDA side of kernels/core/stream.h: streams, events and page-locked host buffers, every call
// checked.
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#include "kernels/core/stream.h"

namespace drgrad::kernels::cuda {

void* create_stream(int device_index) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  cudaStream_t stream = nullptr;
  // Default flags on purpose: a blocking stream stays ordered with the legacy default stream
  // (see Stream in stream.h).
  DRGRAD_CUDA_CHECK(cudaStreamCreate(&stream));
  return stream;
}

void destroy_stream(int device_index, void* stream) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
}

void synchronize_stream(int device_index, void* stream) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void* allocate_pinned(std::size_t bytes) {
  void* pointer = nullptr;
  DRGRAD_CUDA_CHECK(cudaMallocHost(&pointer, bytes));
  return pointer;
}

void release_pinned(void* pointer) {
  DRGRAD_CUDA_CHECK(cudaFreeHost(pointer));
}

void* create_event(int device_index) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  cudaEvent_t event = nullptr;
  // No timing: the event only marks when a copy has landed, and timing events cost more.
  DRGRAD_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

void destroy_event(void* event) {
  DRGRAD_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void copy_to_host_and_record(void* host, const void* device_source, std::size_t bytes, void* stream,
                             void* event) {
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  DRGRAD_CUDA_CHECK(
      cudaMemcpyAsync(host, device_source, bytes, cudaMemcpyDeviceToHost, cuda_stream));
  // A plain record inside a capture only orders captured streams with each other; an external
  // record becomes a node of the graph that records the event on every replay, which the host can
  // then wait for. (The legacy default stream is never captured, and asking it while another
  // stream captures is an error.)
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cuda_stream != nullptr) DRGRAD_CUDA_CHECK(cudaStreamIsCapturing(cuda_stream, &capture));
  DRGRAD_CUDA_CHECK(cudaEventRecordWithFlags(
      static_cast<cudaEvent_t>(event), cuda_stream,
      capture == cudaStreamCaptureStatusActive ? cudaEventRecordExternal : cudaEventRecordDefault));
}

bool event_done(void* event) {
  const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (status == cudaErrorNotReady) {
    // "Not ready" is an answer, not a failure, but the runtime keeps it as the thread's last
    // error: left there, the next launch check (cudaPeekAtLastError) would throw it. Clear it,
    // and only it, so that an earlier real error is not hidden.
    if (cudaPeekAtLastError() == cudaErrorNotReady) static_cast<void>(cudaGetLastError());
    return false;
  }
  DRGRAD_CUDA_CHECK(status);
  return true;
}

void wait_event(void* event) {
  DRGRAD_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

}  // namespace drgrad::kernels::cuda
