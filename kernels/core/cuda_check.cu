// Error reporting for CUDA runtime and cuBLAS calls.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"

namespace drgrad::kernels::cuda {

void throw_cuda_error(int code, const char* call, const char* file, int line) {
  const auto error = static_cast<cudaError_t>(code);
  std::string message = std::string("CUDA error ") + cudaGetErrorName(error) + " (" +
                        cudaGetErrorString(error) + ") in " + call + " at " + file + ":" +
                        std::to_string(line);
  if (error == cudaErrorMemoryAllocation) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      message += "; device memory free " + std::to_string(free_bytes >> 20) + " MiB of " +
                 std::to_string(total_bytes >> 20) + " MiB";
    }
  }
  throw CudaError(message);
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
  throw CudaError(std::string("cuBLAS error ") +
                  cublasGetStatusString(static_cast<cublasStatus_t>(status)) + " in " + call +
                  " at " + file + ":" + std::to_string(line));
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

}  // namespace drgrad::kernels::cuda
