// Error reporting for CUDA runtime and cuBLAS calls.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#include "kernels/core/memory.h"

namespace drgrad::kernels::cuda {

void throw_cuda_error(int code, const char* call, const char* file, int line) {
  const auto error = static_cast<cudaError_t>(code);
  const std::string where = std::string(call) + " at " + file + ":" + std::to_string(line);
  if (error == cudaErrorMemoryAllocation) {
    // The call's own size is not known here; allocate() and allocate_async() name it.
    cudaGetLastError();
    int device_index = 0;
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaGetDevice(&device_index) != cudaSuccess ||
        cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();
      free_bytes = total_bytes = 0;
    }
    throw DeviceOutOfMemoryError(
        format_out_of_memory(Device::cuda(device_index), where, 0, free_bytes, total_bytes), 0,
        free_bytes, total_bytes);
  }
  std::string advice;
  if (error == cudaErrorNoKernelImageForDevice || error == cudaErrorUnsupportedPtxVersion) {
    int device_index = 0;
    cudaDeviceProp properties{};
    if (cudaGetDevice(&device_index) == cudaSuccess &&
        cudaGetDeviceProperties(&properties, device_index) == cudaSuccess) {
      advice = "; this GPU (" + std::string(properties.name) + ") has compute capability " +
               std::to_string(properties.major) + "." + std::to_string(properties.minor) +
               ", which this build was not compiled for: reconfigure with "
               "-DCMAKE_CUDA_ARCHITECTURES=" +
               std::to_string(properties.major * 10 + properties.minor) + " and rebuild";
    } else {
      cudaGetLastError();
      advice =
          "; this build was not compiled for this GPU: reconfigure with "
          "-DCMAKE_CUDA_ARCHITECTURES set to its compute capability and rebuild";
    }
  }
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(error) + " (" +
                  cudaGetErrorString(error) + ") in " + where + advice);
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
