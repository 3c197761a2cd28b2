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

// A device allocation failed for lack of memory. The message (format_out_of_memory in
// kernels/core/memory.h) names the call, the bytes asked for, what was free and in all, and
// what to change; the numbers are kept for callers that want to react (requested_bytes and
// total_bytes are 0 when unknown).
class DeviceOutOfMemoryError : public CudaError {
 public:
  DeviceOutOfMemoryError(const std::string& message, std::size_t requested_bytes,
                         std::size_t free_bytes, std::size_t total_bytes)
      : CudaError(message),
        requested_bytes_(requested_bytes),
        free_bytes_(free_bytes),
        total_bytes_(total_bytes) {}
  std::size_t requested_bytes() const { return requested_bytes_; }
  std::size_t free_bytes() const { return free_bytes_; }
  std::size_t total_bytes() const { return total_bytes_; }

 private:
  std::size_t requested_bytes_, free_bytes_, total_bytes_;
};

// Throws CudaError for a non-zero cudaError_t / cublasStatus_t code (passed as int so this header
// needs no CUDA includes); DeviceOutOfMemoryError for cudaErrorMemoryAllocation (the bytes asked
// for unknown: use allocate / allocate_async of kernels/core/memory.h to have them named).
[[noreturn]] void throw_cuda_error(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);

// A device allocation of `bytes` by `call` on cuda:`device_index` failed with `status` (a
// cudaError_t, as int): clears the error (allocation failures are not sticky) and throws
// DeviceOutOfMemoryError with format_out_of_memory's message (free and total memory read now)
// when memory ran out, CudaError otherwise (a lost device, say). Defined in memory_cuda.cu.
[[noreturn]] void throw_allocation_failure(int status, const char* call, int device_index,
                                           std::size_t bytes);

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
