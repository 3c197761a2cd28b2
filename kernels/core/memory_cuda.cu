// CUDA twin of kernels/core/memory.h: device allocations, copies and fills, every call checked.
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#include "kernels/core/memory.h"

namespace drgrad::kernels::cuda {

void* allocate(int device_index, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw CudaError("cudaMalloc of " + std::to_string(bytes) +
                    " bytes on cuda:" + std::to_string(device_index) + " failed (" +
                    cudaGetErrorString(status) + "); free " + std::to_string(free_bytes) + " of " +
                    std::to_string(total_bytes) + " bytes. Reduce the batch size or model.");
  }
  return pointer;
}

void release(int device_index, void* pointer) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  DRGRAD_CUDA_CHECK(cudaFree(pointer));
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
