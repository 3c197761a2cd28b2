// CUDA twin of kernels/core/memory.h: device allocations, copies and fills, every call checked.
// A failed allocation says how much was asked for and how much the device had free.
#include <cuda_runtime.h>

#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/memory.h"

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
}  // namespace

void* allocate(int device_index, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, bytes);
  if (status != cudaSuccess) throw_allocation_failure(status, "cudaMalloc", device_index, bytes);
  return pointer;
}

void release(int device_index, void* pointer) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaFree(pointer));
}

void* allocate_async(std::size_t bytes, void* stream) {
  if (bytes == 0) return nullptr;
  void* pointer = nullptr;
  const cudaError_t status = cudaMallocAsync(&pointer, bytes, static_cast<cudaStream_t>(stream));
  if (status != cudaSuccess) {
    int device_index = 0;
    DRGRAD_CUDA_CHECK(cudaGetDevice(&device_index));
    throw_allocation_failure(status, "cudaMallocAsync", device_index, bytes);
  }
  return pointer;
}

void release_async(void* pointer, void* stream) {
  if (pointer == nullptr) return;
  DRGRAD_CUDA_CHECK(cudaFreeAsync(pointer, static_cast<cudaStream_t>(stream)));
}

void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes) {
  DRGRAD_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void zero_bytes(int device_index, void* pointer, std::size_t bytes) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaMemset(pointer, 0, bytes));
}

}  // namespace drgrad::kernels::cuda
