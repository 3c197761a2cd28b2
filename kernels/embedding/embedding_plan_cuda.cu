// CUDA twin of kernels/embedding/embedding_plan.h: CUB radix sort of (row, id position) pairs
// (stable, so each row's positions stay in increasing order), run-length encoding of the sorted
// rows into distinct rows and their counts, an exclusive scan of the counts into occurrence
// offsets, and two small kernels that turn sorted positions into samples (and, on request, into
// each position's distinct-row index). Nothing is read back to the host.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/embedding/embedding_plan.h"
#include "kernels/embedding/embedding_plan_math.h"

namespace drgrad::kernels::cuda {
namespace {

// Stream-ordered scratch of `count` values of T, returned to the pool on the same stream, also
// when a later step throws.
template <typename T>
class PlanScratch {
 public:
  PlanScratch(std::size_t count, cudaStream_t stream) : stream_(stream) {
    data_ = static_cast<T*>(allocate_async(count * sizeof(T), stream));
  }
  PlanScratch(const PlanScratch&) = delete;
  PlanScratch& operator=(const PlanScratch&) = delete;
  ~PlanScratch() {
    try {
      release_async(data_, stream_);
    } catch (...) {  // a destructor must not throw; the device is already failing
    }
  }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  cudaStream_t stream_;
};

__global__ void fill_positions_kernel(std::uint64_t* positions, std::int64_t count) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += stride) {
    positions[i] = static_cast<std::uint64_t>(i);
  }
}

// occurrence_samples[o] = the bag holding sorted position o; and, when asked, the distinct index
// of that position (the occurrence list o falls into), found by the same search over the
// occurrence offsets as the CPU tests use.
__global__ void occurrence_samples_kernel(
    const std::uint64_t* sorted_positions, std::int64_t num_ids, const std::int64_t* offsets,
    std::int64_t batch, const std::int64_t* occurrence_offsets, const std::int64_t* num_distinct,
    std::int64_t* occurrence_samples, std::int64_t* distinct_index_of_position) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t o = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; o < num_ids;
       o += stride) {
    const auto position = static_cast<std::int64_t>(sorted_positions[o]);
    occurrence_samples[o] = embedding_math::segment_of(offsets, batch, position);
    if (distinct_index_of_position != nullptr) {
      distinct_index_of_position[position] =
          embedding_math::segment_of(occurrence_offsets, *num_distinct, o);
    }
  }
}

}  // namespace

void build_embedding_backward_plan(const Context& ctx, const std::int64_t* rows,
                                   const std::int64_t* offsets, std::int64_t batch,
                                   std::int64_t num_ids, std::int64_t table_rows,
                                   const EmbeddingBackwardPlan& plan) {
  if (num_ids > std::numeric_limits<int>::max()) {
    throw NotSupportedError("build_embedding_backward_plan: " + std::to_string(num_ids) +
                            " ids in one slot of one batch; CUB's run-length encoding takes at "
                            "most 2^31 - 1: use a smaller batch");
  }
  const cudaStream_t stream = stream_of(ctx);
  if (num_ids == 0) {
    DRGRAD_CUDA_CHECK(cudaMemsetAsync(plan.num_distinct, 0, sizeof(std::int64_t), stream));
    DRGRAD_CUDA_CHECK(cudaMemsetAsync(plan.occurrence_offsets, 0, sizeof(std::int64_t), stream));
    return;
  }
  const int items = static_cast<int>(num_ids);
  const int key_bits = embedding_math::row_key_bits(table_rows);
  // Rows are non-negative, so their unsigned bits sort in the same order.
  const auto* keys_in = reinterpret_cast<const std::uint64_t*>(rows);
  auto* distinct_rows = reinterpret_cast<std::uint64_t*>(plan.distinct_rows);

  const PlanScratch<std::uint64_t> positions(num_ids, stream), sorted_keys(num_ids, stream),
      sorted_positions(num_ids, stream);
  // Run lengths over the whole capacity plus one: zero beyond the runs, so that the exclusive
  // scan leaves num_ids in every offset from num_distinct on.
  const PlanScratch<std::int64_t> run_lengths(num_ids + 1, stream);

  std::size_t sort_bytes = 0, encode_bytes = 0, scan_bytes = 0;
  DRGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, keys_in, sorted_keys.data(), positions.data(), sorted_positions.data(),
      num_ids, 0, key_bits, stream));
  DRGRAD_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(nullptr, encode_bytes, sorted_keys.data(),
                                                       distinct_rows, run_lengths.data(),
                                                       plan.num_distinct, items, stream));
  DRGRAD_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, run_lengths.data(),
                                                  plan.occurrence_offsets, num_ids + 1, stream));
  std::size_t temporary_bytes = std::max({sort_bytes, encode_bytes, scan_bytes, std::size_t{1}});
  const PlanScratch<unsigned char> temporary(temporary_bytes, stream);

  fill_positions_kernel<<<grid_for(num_ids), kBlockSize, 0, stream>>>(positions.data(), num_ids);
  DRGRAD_CUDA_CHECK_LAUNCH(fill_positions_kernel);
  DRGRAD_CUDA_CHECK(cudaMemsetAsync(
      run_lengths.data(), 0, static_cast<std::size_t>(num_ids + 1) * sizeof(std::int64_t), stream));
  DRGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      temporary.data(), temporary_bytes, keys_in, sorted_keys.data(), positions.data(),
      sorted_positions.data(), num_ids, 0, key_bits, stream));
  DRGRAD_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(
      temporary.data(), temporary_bytes, sorted_keys.data(), distinct_rows, run_lengths.data(),
      plan.num_distinct, items, stream));
  DRGRAD_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temporary.data(), temporary_bytes,
                                                  run_lengths.data(), plan.occurrence_offsets,
                                                  num_ids + 1, stream));
  occurrence_samples_kernel<<<grid_for(num_ids), kBlockSize, 0, stream>>>(
      sorted_positions.data(), num_ids, offsets, batch, plan.occurrence_offsets, plan.num_distinct,
      plan.occurrence_samples, plan.distinct_index_of_position);
  DRGRAD_CUDA_CHECK_LAUNCH(occurrence_samples_kernel);
}

}  // namespace drgrad::kernels::cuda
