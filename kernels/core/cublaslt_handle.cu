// Per-thread cache of cuBLASLt handles and workspaces: a handle costs far more to create than a
// small product, and the workspace is allocated once instead of per call.
#include <cuda_runtime.h>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/cublaslt_handle.h"
#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"

namespace drgrad::kernels::cuda {
namespace {

// The handles and workspaces of one host thread. Released when the thread exits; a failure then
// cannot be reported to anyone (the runtime may be shutting down), so it is ignored.
class ThreadLtResources {
 public:
  ThreadLtResources() = default;
  ThreadLtResources(const ThreadLtResources&) = delete;
  ThreadLtResources& operator=(const ThreadLtResources&) = delete;
  ~ThreadLtResources() {
    for (auto& [key, workspace] : workspaces_) {
      if (workspace != nullptr) static_cast<void>(cudaFree(workspace));
    }
    for (cublasLtHandle_t handle : handles_) {
      if (handle != nullptr) static_cast<void>(cublasLtDestroy(handle));
    }
  }

  CublasLtResources get(int device_index, void* stream) {
    if (device_index >= static_cast<int>(handles_.size())) handles_.resize(device_index + 1);
    cublasLtHandle_t& handle = handles_[device_index];
    if (handle == nullptr) DRGRAD_CUBLAS_CHECK(cublasLtCreate(&handle));
    void*& workspace = workspaces_[{device_index, stream}];
    if (workspace == nullptr) workspace = allocate(device_index, kCublasLtWorkspaceBytes);
    return {handle, workspace, kCublasLtWorkspaceBytes};
  }

 private:
  std::vector<cublasLtHandle_t> handles_;
  std::map<std::pair<int, void*>, void*> workspaces_;
};

}  // namespace

CublasLtResources cublaslt_resources_for(const Context& ctx) {
  const int device_index = ctx.device.index;
  if (device_index < 0) {
    throw std::invalid_argument("cuBLASLt call for device " + ctx.device.to_string() +
                                ": device indices start at 0");
  }
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  thread_local ThreadLtResources resources;
  // Keyed by the stream the call runs on (the current stream when the context names none), so that
  // products on two streams never share a workspace.
  return resources.get(device_index, stream_of(ctx));
}

cublasComputeType_t compute_type_for(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::kFp32:
      return CUBLAS_COMPUTE_32F;
    case MatmulPrecision::kTf32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case MatmulPrecision::kBf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
  }
  throw std::invalid_argument("unknown matmul precision " +
                              std::to_string(static_cast<int>(precision)));
}

}  // namespace drgrad::kernels::cuda
