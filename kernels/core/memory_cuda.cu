// CUDA twin of kernels/core/memory.h: stream-ordered allocations from the device's default pool,
// copies and fills on the current stream, every call checked. A failed allocation says how much
// was asked for and how much the device had free. While a CUDA graph is being captured on the
// calling thread (kernels/core/cuda_graph.h), allocations come from the graph's own memory, frees
// of pool memory wait for the end of the capture, uploads from pageable memory become constants of
// the graph and copies into host memory are refused.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/cuda_graph.h"
#include "kernels/core/memory.h"
#include "kernels/core/staging_ring.h"
#include "kernels/core/stream.h"

namespace drgrad::kernels::cuda {

void throw_allocation_failure(int code, const char* call, int device_index, std::size_t bytes) {
  const auto status = static_cast<cudaError_t>(code);
  cudaGetLastError();  // an allocation failure is not sticky; clear it for later checks
  if (status != cudaErrorMemoryAllocation) {
    throw CudaError(std::string("CUDA error ") + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ") in " + call + " of " + std::to_string(bytes) +
                    " bytes on cuda:" + std::to_string(device_index));
  }
  std::size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    free_bytes = total_bytes = 0;
  }
  throw DeviceOutOfMemoryError(
      format_out_of_memory(Device::cuda(device_index), call, bytes, free_bytes, total_bytes), bytes,
      free_bytes, total_bytes);
}

namespace {
// The default pool of each device this process has touched gets its release threshold raised
// once: by default the pool gives freed memory back to the device at every synchronisation, and a
// training step that frees and allocates the same sizes every step would pay for it each time.
void prepare_default_pool(int device_index) {
  static std::mutex mutex;
  static std::vector<bool> prepared;
  std::lock_guard<std::mutex> lock(mutex);
  const auto index = static_cast<std::size_t>(device_index);
  if (index < prepared.size() && prepared[index]) return;
  cudaMemPool_t pool = nullptr;
  DRGRAD_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_index));
  std::uint64_t keep_everything = UINT64_MAX;
  DRGRAD_CUDA_CHECK(
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything));
  if (index >= prepared.size()) prepared.resize(index + 1, false);
  prepared[index] = true;
}

// After a failed allocation: waits for every pending free of the device and hands the pool's
// cached blocks back to it, so that a retry (or a cudaMalloc) can have them.
void return_cached_blocks(int device_index) {
  cudaGetLastError();
  DRGRAD_CUDA_CHECK(cudaDeviceSynchronize());
  cudaMemPool_t pool = nullptr;
  DRGRAD_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_index));
  DRGRAD_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
}

cudaStream_t resolve_stream(int device_index, void* stream) {
  return static_cast<cudaStream_t>(stream != nullptr ? stream
                                                     : current_stream(Device::cuda(device_index)));
}

int current_device() {
  int device_index = 0;
  DRGRAD_CUDA_CHECK(cudaGetDevice(&device_index));
  return device_index;
}

// Host-to-device copies from ordinary (pageable) memory make the driver stage the bytes through
// its own page-locked buffers, and it may wait for the stream to get to the copy before it
// returns: a batch upload could then wait for the previous step to finish. Instead the bytes are
// copied here, on the host, into a ring of page-locked memory (one per thread and device), and
// the device copy is issued from there; an event behind each copy says when its bytes may be
// overwritten. The host waits only when the ring comes round to bytes whose copy has not run yet,
// about a ring's worth of uploads later.
class StagingRing {
 public:
  static constexpr std::size_t kCapacity = std::size_t(32) << 20;

  StagingRing() : plan_(kCapacity) { DRGRAD_CUDA_CHECK(cudaMallocHost(&host_, kCapacity)); }
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;
  ~StagingRing() {  // at thread exit: nothing to report to; copies in flight finish first
    for (auto& [ticket, event] : events_) {
      static_cast<void>(cudaEventSynchronize(event));
      static_cast<void>(cudaEventDestroy(event));
    }
    for (cudaEvent_t event : spare_events_) static_cast<void>(cudaEventDestroy(event));
    static_cast<void>(cudaFreeHost(host_));
  }

  bool fits(std::size_t bytes) const { return plan_.fits(bytes); }

  void copy_to_device(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
    std::vector<std::uint64_t> must_finish;
    const StagingRingPlan::Region region = plan_.reserve(bytes, &must_finish);
    for (const std::uint64_t ticket : must_finish) {
      const cudaEvent_t event = events_.at(ticket);
      events_.erase(ticket);
      spare_events_.push_back(event);
      DRGRAD_CUDA_CHECK(cudaEventSynchronize(event));
    }
    char* staged = static_cast<char*>(host_) + region.offset;
    std::memcpy(staged, src, bytes);
    DRGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, stream));
    cudaEvent_t event = nullptr;
    if (spare_events_.empty()) {
      DRGRAD_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    } else {
      event = spare_events_.back();
      spare_events_.pop_back();
    }
    const cudaError_t recorded = cudaEventRecord(event, stream);
    if (recorded != cudaSuccess) spare_events_.push_back(event);
    DRGRAD_CUDA_CHECK(recorded);
    const std::uint64_t ticket = ++last_ticket_;
    events_.emplace(ticket, event);
    plan_.in_flight(region, ticket);
  }

 private:
  void* host_ = nullptr;
  StagingRingPlan plan_;
  std::unordered_map<std::uint64_t, cudaEvent_t> events_;
  std::vector<cudaEvent_t> spare_events_;
  std::uint64_t last_ticket_ = 0;
};

StagingRing& staging_ring(int device_index) {
  thread_local std::vector<std::unique_ptr<StagingRing>> rings;
  const auto index = static_cast<std::size_t>(device_index);
  if (index >= rings.size()) rings.resize(index + 1);
  if (!rings[index]) rings[index] = std::make_unique<StagingRing>();
  return *rings[index];
}

bool is_pageable_host_memory(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    cudaGetLastError();
    return true;
  }
  return attributes.type == cudaMemoryTypeUnregistered;
}
}  // namespace

void* allocate(int device_index, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  void* pointer = nullptr;
  cudaError_t status = cudaMalloc(&pointer, bytes);
  if (status == cudaErrorMemoryAllocation) {
    return_cached_blocks(device_index);
    status = cudaMalloc(&pointer, bytes);
  }
  if (status != cudaSuccess) throw_allocation_failure(status, "cudaMalloc", device_index, bytes);
  return pointer;
}

void release(int device_index, void* pointer) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaFree(pointer));
}

void* allocate_async(std::size_t bytes, void* stream) {
  if (bytes == 0) return nullptr;
  const int device_index = current_device();
  // During a capture: from the graph's memory, never a graph memory node (tensors outlive the
  // step, and a graph that allocates without freeing cannot be relaunched).
  if (void* graph_memory = graph_allocate(device_index, bytes)) return graph_memory;
  prepare_default_pool(device_index);
  const cudaStream_t cuda_stream = resolve_stream(device_index, stream);
  void* pointer = nullptr;
  cudaError_t status = cudaMallocAsync(&pointer, bytes, cuda_stream);
  if (status == cudaErrorMemoryAllocation) {
    return_cached_blocks(device_index);
    status = cudaMallocAsync(&pointer, bytes, cuda_stream);
  }
  if (status != cudaSuccess) {
    throw_allocation_failure(status, "cudaMallocAsync", device_index, bytes);
  }
  return pointer;
}

void release_async(void* pointer, void* stream) {
  if (pointer == nullptr) return;
  const int device_index = current_device();
  if (graph_release(device_index, pointer)) return;  // graph memory, or deferred by a capture
  DRGRAD_CUDA_CHECK(cudaFreeAsync(pointer, resolve_stream(device_index, stream)));
}

void* allocate_async_on(int device_index, std::size_t bytes, void* stream) {
  if (bytes == 0) return nullptr;
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  return allocate_async(bytes, stream);
}

void release_async_on(int device_index, void* pointer, void* stream) {
  if (pointer == nullptr) return;
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  release_async(pointer, stream);
}

void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src, std::size_t bytes,
                void* stream) {
  // The stream of the CUDA side (the destination's when both are devices).
  const Device stream_device = dst_device.is_cuda() ? dst_device : src_device;
  DRGRAD_CUDA_CHECK(cudaSetDevice(stream_device.index));
  const cudaStream_t cuda_stream = resolve_stream(stream_device.index, stream);
  if (capturing(stream_device.index)) {
    if (dst_device.is_cpu()) {
      throw GraphCaptureError(
          "copy_bytes of " + std::to_string(bytes) + " bytes from " + src_device.to_string() +
          " into host memory: a copy to host memory cannot be inside a captured step (it "
          "synchronises the stream, and the host would read it before the graph ever runs); read "
          "results after CudaGraph::launch, with a HostReadback started in the step");
    }
    // The staging ring waits on events and reuses its bytes: a graph would replay whatever the
    // ring holds then. The bytes are copied into the graph's own page-locked memory instead and
    // become a constant of the graph.
    if (src_device.is_cpu() && bytes > 0 && is_pageable_host_memory(src)) {
      src = graph_host_constant(stream_device.index, src, bytes);
    }
    DRGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda_stream));
    return;
  }
  if (dst_device.is_cuda() && src_device.is_cpu() && bytes > 0) {
    StagingRing& ring = staging_ring(dst_device.index);
    if (ring.fits(bytes) && is_pageable_host_memory(src)) {
      ring.copy_to_device(dst, src, bytes, cuda_stream);
      return;
    }
  }
  DRGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda_stream));
  // The host reads what lands in host memory as soon as this returns.
  if (dst_device.is_cpu()) DRGRAD_CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
}

void zero_bytes(int device_index, void* pointer, std::size_t bytes, void* stream) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaMemsetAsync(pointer, 0, bytes, resolve_stream(device_index, stream)));
}

}  // namespace drgrad::kernels::cuda
