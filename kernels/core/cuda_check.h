// Checks for CUDA runtime and cuBLAS calls: every call is wrapped, and a failure throws with the
// call's text, file and line. Only included by CUDA-enabled translation units.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace drgrad::kernels::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws CudaError for a non-zero cudaError_t / cublasStatus_t code (passed as int so this header
// needs no CUDA includes).
[[noreturn]] void throw_cuda_error(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);

// Devices visible to the CUDA runtime; 0 when the driver or device is missing (never throws).
int device_count();

}  // namespace drgrad::kernels::cuda

#define DRGRAD_CUDA_CHECK(call)                                                             \
  do {                                                                                      \
    const int drgrad_status_ = static_cast<int>(call);                                      \
    if (drgrad_status_ != 0)                                                                \
      ::drgrad::kernels::cuda::throw_cuda_error(drgrad_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define DRGRAD_CUBLAS_CHECK(call)                                                             \
  do {                                                                                        \
    const int drgrad_status_ = static_cast<int>(call);                                        \
    if (drgrad_status_ != 0)                                                                  \
      ::drgrad::kernels::cuda::throw_cublas_error(drgrad_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: checks the launch configuration error.
#define DRGRAD_CUDA_CHECK_LAUNCH(name) DRGRAD_CUDA_CHECK(cudaPeekAtLastError())
