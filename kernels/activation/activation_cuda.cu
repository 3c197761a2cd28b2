// CUDA twin of kernels/activation: one thread per element, grid-stride loop.
#include <cuda_runtime.h>

#include "kernels/activation/activation.h"
#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"

namespace drgrad::kernels::cuda {
namespace {

__device__ float softplus(float x) {
  return x > 20.f ? x : log1pf(expf(x));
}
__device__ float sigmoid(float x) {
  return x >= 0.f ? 1.f / (1.f + expf(-x)) : expf(x) / (1.f + expf(x));
}

__global__ void activation_forward_kernel(Activation f, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    switch (f) {
      case Activation::kIdentity:
        y[i] = v;
        break;
      case Activation::kRelu:
        y[i] = v < 0.f ? 0.f : v;  // NaN passes, as in the CPU twin (a NaN must reach the loss)
        break;
      case Activation::kMish:
        y[i] = v * tanhf(softplus(v));
        break;
      case Activation::kSigmoid:
        y[i] = sigmoid(v);
        break;
    }
  }
}

__global__ void activation_backward_kernel(Activation f, const float* x, const float* y,
                                           const float* dy, float* dx, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    switch (f) {
      case Activation::kIdentity:
        dx[i] = dy[i];
        break;
      case Activation::kRelu:
        dx[i] = x[i] > 0.f ? dy[i] : 0.f;
        break;
      case Activation::kMish: {
        const float t = tanhf(softplus(x[i]));
        dx[i] = dy[i] * (t + x[i] * (1.f - t * t) * sigmoid(x[i]));
        break;
      }
      case Activation::kSigmoid:
        dx[i] = dy[i] * y[i] * (1.f - y[i]);
        break;
    }
  }
}

}  // namespace

void activation_forward(const Context& ctx, Activation f, const float* x, float* y,
                        std::int64_t n) {
  if (n == 0) return;
  activation_forward_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(f, x, y, n);
  DRGRAD_CUDA_CHECK_LAUNCH(activation_forward_kernel);
}

void activation_backward(const Context& ctx, Activation f, const float* x, const float* y,
                         const float* dy, float* dx, std::int64_t n) {
  if (n == 0) return;
  activation_backward_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(f, x, y, dy, dx, n);
  DRGRAD_CUDA_CHECK_LAUNCH(activation_backward_kernel);
}

}  // namespace drgrad::kernels::cuda
