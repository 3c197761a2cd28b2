// Per-thread, per-device cache of cuBLAS handles: creating a handle costs far more than a small
// GEMM, and a handle must not be shared between threads that set different streams on it.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/core/cublas_handle.h"
#include "kernels/core/cublaslt_handle.h"
#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"

namespace drgrad::kernels::cuda {
namespace {

// The handles of one host thread, indexed by device. Destroyed when the thread exits; a failure
// then cannot be reported to anyone (the runtime may already be shutting down), so it is ignored.
class ThreadHandles {
 public:
  ThreadHandles() = default;
  ThreadHandles(const ThreadHandles&) = delete;
  ThreadHandles& operator=(const ThreadHandles&) = delete;
  ~ThreadHandles() {
    for (cublasHandle_t handle : handles_) {
      if (handle != nullptr) static_cast<void>(cublasDestroy(handle));
    }
  }

  cublasHandle_t for_device(int device_index) {
    if (device_index >= static_cast<int>(handles_.size())) handles_.resize(device_index + 1);
    cublasHandle_t& handle = handles_[device_index];
    if (handle == nullptr) DRGRAD_CUBLAS_CHECK(cublasCreate(&handle));
    return handle;
  }

 private:
  std::vector<cublasHandle_t> handles_;
};

}  // namespace

cublasHandle_t cublas_handle_for(const Context& ctx) {
  const int device_index = ctx.device.index;
  if (device_index < 0) {
    throw std::invalid_argument("cuBLAS call for device " + ctx.device.to_string() +
                                ": device indices start at 0");
  }
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  thread_local ThreadHandles handles;
  cublasHandle_t handle = handles.for_device(device_index);
  DRGRAD_CUBLAS_CHECK(cublasSetStream(handle, stream_of(ctx)));
  // cublasSetStream puts the handle back on cuBLAS's own workspace pool, which since CUDA 12.2
  // allocates stream-ordered: inside a CUDA graph capture that would add the graph memory nodes
  // of cuBLAS's choosing. The stream's cuBLASLt workspace (kept by this thread, used in stream
  // order by both libraries) serves instead, so a captured product allocates nothing.
  const CublasLtResources lt = cublaslt_resources_for(ctx);
  DRGRAD_CUBLAS_CHECK(cublasSetWorkspace(handle, lt.workspace, lt.workspace_bytes));
  return handle;
}

}  // namespace drgrad::kernels::cuda
