// CUDA twin of kernels/optimizer: one thread per parameter element, grid-stride, each element
// through the shared per-element rules of update_rules.h. Row-sparse updates map element e of the
// compact [num_rows, dim] gradient to table row rows[e / dim]. The multi-tensor update walks a
// table of segments in one launch.
#include <cuda_runtime.h>

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

// Bytes per element (fp32): SGD reads w, g, v and writes w, v (20); Adam reads w, g, m, v and
// writes w, m, v (28); Adagrad reads w, g, a and writes w, a (20).
template <typename Index>
__global__ void update_kernel(UpdateRule rule, Index index, float* weights, const float* gradients,
                              float* state_a, float* state_b, std::int64_t count,
                              const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < count;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = index(e);
    apply_update_rule(rule, weights[i], gradients[e], state_a == nullptr ? nullptr : state_a + i,
                      state_b == nullptr ? nullptr : state_b + i);
  }
}

// Multi-tensor update. The group's elements are numbered in segment order (segment s covers
// offset_s .. offset_s + n_s - 1); element number x belongs to thread x mod (grid threads), so
// every thread gets the same share of the group's elements however the lengths are spread.
__global__ void fused_dense_update_kernel(UpdateRule rule,
                                          const DenseUpdateSegment<float>* segments,
                                          std::int64_t num_segments, const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  const std::int64_t threads = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t thread = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const DenseUpdateSegment<float> segment = segments[s];
    std::int64_t i = (thread - segment.offset % threads + threads) % threads;
    for (; i < segment.n; i += threads) {
      apply_update_rule(rule, segment.weights[i], segment.gradients[i],
                        segment.state_a == nullptr ? nullptr : segment.state_a + i,
                        segment.state_b == nullptr ? nullptr : segment.state_b + i);
    }
  }
}

template <typename Index>
void launch_update(const Context& ctx, const UpdateRule& rule, Index index, float* weights,
                   const float* gradients, float* state_a, float* state_b, std::int64_t count,
                   const std::int64_t* skip = nullptr) {
  if (count == 0) return;
  update_kernel<<<grid_for(count), kBlockSize, 0, stream_of(ctx)>>>(rule, index, weights, gradients,
                                                                    state_a, state_b, count, skip);
  DRGRAD_CUDA_CHECK_LAUNCH(update_kernel);
}

}  // namespace

void fused_dense_update(const Context& ctx, const UpdateRule& rule,
                        const DenseUpdateSegment<float>* segments, std::int64_t num_segments,
                        std::int64_t total_elements, const std::int64_t* skip) {
  if (total_elements == 0) return;
  fused_dense_update_kernel<<<grid_for(total_elements), kBlockSize, 0, stream_of(ctx)>>>(
      rule, segments, num_segments, skip);
  DRGRAD_CUDA_CHECK_LAUNCH(fused_dense_update_kernel);
}

void sgd_update(const Context& ctx, const SgdOptions& options, float* weights,
                const float* gradients, float* velocity, std::int64_t n) {
  launch_update(ctx, sgd_rule(options), DenseIndex{}, weights, gradients, velocity, nullptr, n);
}

void sgd_update_rows(const Context& ctx, const SgdOptions& options, float* table,
                     std::int64_t table_rows, const RowSparseGradient<float>& gradient,
                     float* velocity) {
  launch_update(ctx, sgd_rule(options), RowIndex{gradient.rows, gradient.dim}, table,
                gradient.values, velocity, nullptr, gradient.num_rows * gradient.dim,
                gradient.skip);
}

void adam_update(const Context& ctx, const AdamOptions& options, std::int64_t step, float* weights,
                 const float* gradients, float* first_moment, float* second_moment,
                 std::int64_t n) {
  launch_update(ctx, adam_rule(options, step), DenseIndex{}, weights, gradients, first_moment,
                second_moment, n);
}

void adam_update_rows(const Context& ctx, const AdamOptions& options, std::int64_t step,
                      float* table, std::int64_t table_rows,
                      const RowSparseGradient<float>& gradient, float* first_moment,
                      float* second_moment) {
  launch_update(ctx, adam_rule(options, step), RowIndex{gradient.rows, gradient.dim}, table,
                gradient.values, first_moment, second_moment, gradient.num_rows * gradient.dim,
                gradient.skip);
}

void adagrad_update(const Context& ctx, const AdagradOptions& options, float* weights,
                    const float* gradients, float* accumulator, std::int64_t n) {
  launch_update(ctx, adagrad_rule(options), DenseIndex{}, weights, gradients, accumulator, nullptr,
                n);
}

void adagrad_update_rows(const Context& ctx, const AdagradOptions& options, float* table,
                         std::int64_t table_rows, const RowSparseGradient<float>& gradient,
                         float* accumulator) {
  launch_update(ctx, adagrad_rule(options), RowIndex{gradient.rows, gradient.dim}, table,
                gradient.values, accumulator, nullptr, gradient.num_rows * gradient.dim,
                gradient.skip);
}

}  // namespace drgrad::kernels::cuda
