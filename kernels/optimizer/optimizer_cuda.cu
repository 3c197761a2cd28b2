// CUDA twin of kernels/optimizer: one thread per parameter element, grid-stride. Row-sparse
// updates map element e of the compact [num_rows, dim] gradient to table row rows[e / dim].
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/optimizer/optimizer.h"

namespace drgrad::kernels::cuda {
namespace {

// Where element e of the gradient lands in the table and its state: identity for dense updates,
// the row lookup for row-sparse ones.
struct DenseIndex {
  __device__ std::int64_t operator()(std::int64_t e) const { return e; }
};
struct RowIndex {
  const std::int64_t* rows;
  std::int64_t dim;
  __device__ std::int64_t operator()(std::int64_t e) const {
    const std::int64_t r = e / dim;
    return rows[r] * dim + (e - r * dim);
  }
};

template <typename Index>
__global__ void sgd_kernel(SgdOptions options, Index index, float* weights, const float* gradients,
                           float* velocity, std::int64_t count) {
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < count;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = index(e);
    const float regularized = gradients[e] + options.weight_decay * weights[i];
    if (velocity == nullptr) {
      weights[i] -= options.learning_rate * regularized;
    } else {
      const float v = options.momentum * velocity[i] + regularized;
      velocity[i] = v;
      weights[i] -= options.learning_rate * v;
    }
  }
}

template <typename Index>
__global__ void adam_kernel(AdamOptions options, float first_correction, float second_correction,
                            Index index, float* weights, const float* gradients,
                            float* first_moment, float* second_moment, std::int64_t count) {
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < count;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = index(e);
    const float g = gradients[e];
    const float m = options.beta1 * first_moment[i] + (1.f - options.beta1) * g;
    const float v = options.beta2 * second_moment[i] + (1.f - options.beta2) * g * g;
    first_moment[i] = m;
    second_moment[i] = v;
    const float w = weights[i];
    weights[i] = w - options.learning_rate * ((m / first_correction) /
                                                  (sqrtf(v / second_correction) + options.epsilon) +
                                              options.weight_decay * w);
  }
}

template <typename Index>
__global__ void adagrad_kernel(AdagradOptions options, Index index, float* weights,
                               const float* gradients, float* accumulator, std::int64_t count) {
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < count;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = index(e);
    const float w = weights[i];
    const float regularized = gradients[e] + options.weight_decay * w;
    const float a = accumulator[i] + regularized * regularized;
    accumulator[i] = a;
    weights[i] = w - options.learning_rate * regularized / (sqrtf(a) + options.epsilon);
  }
}

// 1 - beta^t in double on the host (as the CPU twin does), handed to the kernel as float.
float bias_correction(float beta, std::int64_t step) {
  return static_cast<float>(1.0 - std::pow(double(beta), double(step)));
}

}  // namespace

void sgd_update(const Context& ctx, const SgdOptions& options, float* weights,
                const float* gradients, float* velocity, std::int64_t n) {
  if (n == 0) return;
  sgd_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(options, DenseIndex{}, weights,
                                                             gradients, velocity, n);
  DRGRAD_CUDA_CHECK_LAUNCH(sgd_kernel);
}

void sgd_update_rows(const Context& ctx, const SgdOptions& options, float* table,
                     std::int64_t table_rows, const RowSparseGradient<float>& gradient,
                     float* velocity) {
  const std::int64_t count = gradient.num_rows * gradient.dim;
  if (count == 0) return;
  sgd_kernel<<<grid_for(count), kBlockSize, 0, stream_of(ctx)>>>(
      options, RowIndex{gradient.rows, gradient.dim}, table, gradient.values, velocity, count);
  DRGRAD_CUDA_CHECK_LAUNCH(sgd_kernel);
}

void adam_update(const Context& ctx, const AdamOptions& options, std::int64_t step, float* weights,
                 const float* gradients, float* first_moment, float* second_moment,
                 std::int64_t n) {
  if (n == 0) return;
  adam_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(
      options, bias_correction(options.beta1, step), bias_correction(options.beta2, step),
      DenseIndex{}, weights, gradients, first_moment, second_moment, n);
  DRGRAD_CUDA_CHECK_LAUNCH(adam_kernel);
}

void adam_update_rows(const Context& ctx, const AdamOptions& options, std::int64_t step,
                      float* table, std::int64_t table_rows,
                      const RowSparseGradient<float>& gradient, float* first_moment,
                      float* second_moment) {
  const std::int64_t count = gradient.num_rows * gradient.dim;
  if (count == 0) return;
  adam_kernel<<<grid_for(count), kBlockSize, 0, stream_of(ctx)>>>(
      options, bias_correction(options.beta1, step), bias_correction(options.beta2, step),
      RowIndex{gradient.rows, gradient.dim}, table, gradient.values, first_moment, second_moment,
      count);
  DRGRAD_CUDA_CHECK_LAUNCH(adam_kernel);
}

void adagrad_update(const Context& ctx, const AdagradOptions& options, float* weights,
                    const float* gradients, float* accumulator, std::int64_t n) {
  if (n == 0) return;
  adagrad_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(options, DenseIndex{}, weights,
                                                                 gradients, accumulator, n);
  DRGRAD_CUDA_CHECK_LAUNCH(adagrad_kernel);
}

void adagrad_update_rows(const Context& ctx, const AdagradOptions& options, float* table,
                         std::int64_t table_rows, const RowSparseGradient<float>& gradient,
                         float* accumulator) {
  const std::int64_t count = gradient.num_rows * gradient.dim;
  if (count == 0) return;
  adagrad_kernel<<<grid_for(count), kBlockSize, 0, stream_of(ctx)>>>(
      options, RowIndex{gradient.rows, gradient.dim}, table, gradient.values, accumulator, count);
  DRGRAD_CUDA_CHECK_LAUNCH(adagrad_kernel);
}

}  // namespace drgrad::kernels::cuda
