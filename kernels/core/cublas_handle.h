// One cuBLAS handle per (host thread, device), created on first use and bound to the op's stream.
// Only included by CUDA translation units (it needs the cuBLAS header).
#pragma once

#include <cublas_v2.h>

#include "kernels/core/device.h"

namespace drgrad::kernels::cuda {

// Makes ctx.device current and returns this thread's cuBLAS handle for it, with its stream set to
// ctx.stream. The handle belongs to the cache (never destroy it) and stays valid until the calling
// thread exits; each host thread has its own, so concurrent callers never share a handle.
// Its workspace is the stream's cuBLASLt workspace (kernels/core/cublaslt_handle.h), so that no
// product allocates (nothing inside a CUDA graph capture either).
// Math mode is cuBLAS's default, plain fp32 (no TF32), so results track the CPU twin closely.
cublasHandle_t cublas_handle_for(const Context& ctx);

}  // namespace drgrad::kernels::cuda
