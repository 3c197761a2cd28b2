// One cuBLASLt handle per (host thread, device) and one workspace per (host thread, device,
// stream), created on first use; plus the cuBLAS compute type of each matmul precision. Only
// included by CUDA translation units (it needs the cuBLAS headers).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstddef>

#include "kernels/core/device.h"

namespace drgrad::kernels::cuda {

// Workspace offered to cuBLASLt per call: NVIDIA recommends 32 MiB on Hopper so that the
// heuristic may pick split-K and stream-K kernels.
inline constexpr std::size_t kCublasLtWorkspaceBytes = std::size_t(32) << 20;

struct CublasLtResources {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

// Makes ctx.device current and returns this thread's cuBLASLt handle for it with the workspace
// of ctx.stream (allocated on first use: keep the first call out of CUDA graph capture). Both
// belong to the cache and stay valid until the calling thread exits. Calls on one stream run in
// order, so they can share the workspace; each stream has its own.
CublasLtResources cublaslt_resources_for(const Context& ctx);

// CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32 or CUBLAS_COMPUTE_32F_FAST_16BF: fp32 storage
// and accumulation in every case, products rounded to the precision's inputs.
cublasComputeType_t compute_type_for(MatmulPrecision precision);

}  // namespace drgrad::kernels::cuda
