// CUDA twin of kernels/core/memory.h: stream-ordered allocations from the device's default pool,
// copies and fills on the current stream, every call checked. A failed allocation says how much
// was asked for and how much the device had free.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/memory.h"
#include "kernels/core/stream.h"

namespace drgrad::kernels::cuda {

namespace {
// Turns a failed allocation into DeviceOutOfMemoryError (lack of memory) or CudaError (any other
// failure, such as a lost device), with the free and total memory read right after the failure.
[[noreturn]] void throw_allocation_failure(cudaError_t status, const char* call, int device_index,
                                           std::size_t bytes) {
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
  DRGRAD_CUDA_CHECK(cudaFreeAsync(pointer, resolve_stream(current_device(), stream)));
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
  DRGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda_stream));
  // The host reads what lands in host memory as soon as this returns.
  if (dst_device.is_cpu()) DRGRAD_CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
}

void zero_bytes(int device_index, void* pointer, std::size_t bytes, void* stream) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaMemsetAsync(pointer, 0, bytes, resolve_stream(device_index, stream)));
}

}  // namespace drgrad::kernels::cuda
