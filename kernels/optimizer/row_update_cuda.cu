// CUDA twin of kernels/optimizer/row_update.h: the launch covers the tables' capacities, every
// thread reads each table's row count from device memory and leaves at once past it, and each
// element goes through the shared per-element rules of update_rules.h.
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/optimizer/row_update.h"

namespace drgrad::kernels::cuda {
namespace {

// The touched rows of one table for this thread. Element e of the compact [count, dim] gradient
// (segments numbered end to end by their capacities, from segment.offset) belongs to thread
// (segment.offset + e) mod threads, as in the dense multi-tensor update, so threads share the
// work of all tables evenly. Elements at or beyond count * dim are not visited.
__device__ void update_segment_rows(const UpdateRule& rule, const RowUpdateSegment<float>& segment,
                                    std::int64_t thread, std::int64_t threads) {
  if (segment.capacity == 0) return;
  std::int64_t count = *segment.num_rows_device;
  count = count < 0 ? 0 : (count > segment.capacity ? segment.capacity : count);
  const std::int64_t elements = count * segment.dim;
  for (std::int64_t e = (thread - segment.offset % threads + threads) % threads; e < elements;
       e += threads) {
    const std::int64_t r = e / segment.dim;
    const std::int64_t i = segment.rows[r] * segment.dim + (e - r * segment.dim);
    apply_update_rule(rule, segment.table[i], segment.values[e],
                      segment.state_a == nullptr ? nullptr : segment.state_a + i,
                      segment.state_b == nullptr ? nullptr : segment.state_b + i);
  }
}

// Bytes per touched element (fp32), as the other row updates: SGD 20, Adam 28, Adagrad 20, plus
// one row index per row; threads past the counts read the counts only.
__global__ void fused_row_update_kernel(UpdateRule rule, const RowUpdateSegment<float>* segments,
                                        std::int64_t num_segments, const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  const std::int64_t threads = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t thread = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RowUpdateSegment<float> segment = segments[s];  // one load of the record per thread
    update_segment_rows(rule, segment, thread, threads);
  }
}

__global__ void row_update_device_count_kernel(UpdateRule rule, RowUpdateSegment<float> segment,
                                               const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  const std::int64_t threads = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t thread = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  update_segment_rows(rule, segment, thread, threads);
}

}  // namespace

void fused_row_update(const Context& ctx, const UpdateRule& rule,
                      const RowUpdateSegment<float>* segments, std::int64_t num_segments,
                      std::int64_t total_capacity_elements, const std::int64_t* skip) {
  if (total_capacity_elements == 0 || num_segments == 0) return;
  fused_row_update_kernel<<<grid_for(total_capacity_elements), kBlockSize, 0, stream_of(ctx)>>>(
      rule, segments, num_segments, skip);
  DRGRAD_CUDA_CHECK_LAUNCH(fused_row_update_kernel);
}

void update_rows_device_count(const Context& ctx, const UpdateRule& rule,
                              const RowUpdateSegment<float>& segment, const std::int64_t* skip) {
  RowUpdateSegment<float> alone = segment;
  alone.offset = 0;
  const std::int64_t elements = alone.capacity * alone.dim;
  if (elements == 0) return;
  row_update_device_count_kernel<<<grid_for(elements), kBlockSize, 0, stream_of(ctx)>>>(rule, alone,
                                                                                        skip);
  DRGRAD_CUDA_CHECK_LAUNCH(row_update_device_count_kernel);
}

}  // namespace drgrad::kernels::cuda
