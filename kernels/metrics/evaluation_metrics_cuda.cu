// CUDA twin of kernels/metrics/evaluation_metrics: per-task sums by block partials added in a fixed
// order, and the exact AUC from two CUB radix sorts per task. Sorting the keys (score, label) once
// with negatives first inside each group of equal scores and once with positives first, the sum
// of the positives' positions gives sum over positives of (negatives sorted before it) plus
// P (P - 1) / 2; the two tie orders together give 2U = sum over positives of (2 * negatives below
// its score + negatives tied with it) as exact integers, with no pass over groups.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/metrics/evaluation_metrics.h"
#include "kernels/metrics/rank_keys.h"

namespace drgrad::kernels::cuda {
namespace {

// At most this many blocks per task: the partials of a task fit one block's loop, and the grid
// (hence every summation order) depends on the sample count only, not on the device.
constexpr int kMaxMetricBlocks = 256;
using rank_keys::kRankKeyBits;

// The task specs as one kernel argument (by value).
struct DeviceMetricSpecs {
  std::int64_t score_column[kMaxMetricTasks];
  std::int64_t label_column[kMaxMetricTasks];
};

// One block's share of one task's sums.
struct BlockTotals {
  long long positives;
  long long nan_samples;
  double log_loss_sum;
  double squared_error_sum;
};

// One task's sums, copied back to the host in one piece.
struct DeviceTaskTotals {
  long long positives;
  long long nan_samples;
  long long position_sum_negatives_first;
  long long position_sum_positives_first;
  double log_loss_sum;
  double squared_error_sum;
};

// Stream-ordered scratch for `count` values of T, freed on the same stream also when a later step
// throws.
template <typename T>
class StreamScratch {
 public:
  StreamScratch(std::size_t count, cudaStream_t stream) : stream_(stream) {
    data_ = static_cast<T*>(allocate_async(count * sizeof(T), stream));
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  ~StreamScratch() {
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

// Grid (blocks, tasks): block (b, k) adds task k's samples b, b + blocks, ... (in blocks of
// threads) and writes its partials to partials[k * blocks + b]. Same expressions as the CPU twin.
__global__ void column_totals_kernel(MetricInputs inputs, DeviceMetricSpecs specs,
                                     BlockTotals* partials) {
  const int task = blockIdx.y;
  const std::int64_t score_column = specs.score_column[task];
  const std::int64_t label_column = specs.label_column[task];
  const double low = inputs.log_loss_clip, high = 1.0 - inputs.log_loss_clip;
  long long positives = 0, nan_samples = 0;
  double log_loss_sum = 0.0, squared_error_sum = 0.0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < inputs.samples;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float score = inputs.scores[i * inputs.score_columns + score_column];
    const float label = inputs.labels[i * inputs.label_columns + label_column];
    positives += label >= inputs.positive_threshold ? 1 : 0;
    nan_samples += isnan(score) || isnan(label) ? 1 : 0;
    const double s = score;
    const double p = s < low ? low : (high < s ? high : s);  // std::clamp, NaN passes through
    const double y = label;
    log_loss_sum -= y * log(p) + (1.0 - y) * log(1.0 - p);
    const double difference = s - y;
    squared_error_sum += difference * difference;
  }
  BlockTotals totals;
  totals.positives = block_sum(positives);
  __syncthreads();  // each block_sum's shared array is read by thread 0 before its next use
  totals.nan_samples = block_sum(nan_samples);
  __syncthreads();
  totals.log_loss_sum = block_sum(log_loss_sum);
  __syncthreads();
  totals.squared_error_sum = block_sum(squared_error_sum);
  if (threadIdx.x == 0) partials[task * gridDim.x + blockIdx.x] = totals;
}

// keys[i] = rank_keys::rank_key of sample i (positive_tie_bit 1: negatives first among ties).
__global__ void rank_keys_kernel(MetricInputs inputs, std::int64_t score_column,
                                 std::int64_t label_column, unsigned positive_tie_bit,
                                 std::uint64_t* keys) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < inputs.samples;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float score = inputs.scores[i * inputs.score_columns + score_column];
    const bool positive =
        inputs.labels[i * inputs.label_columns + label_column] >= inputs.positive_threshold;
    keys[i] = rank_keys::rank_key(score, positive, positive_tie_bit);
  }
}

// partials[b] = sum of the positions j (handled by block b) whose key carries a positive's tie bit.
__global__ void positive_position_sums_kernel(const std::uint64_t* sorted_keys, std::int64_t count,
                                              unsigned positive_tie_bit, long long* partials) {
  long long local_sum = 0;
  for (std::int64_t j = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; j < count;
       j += std::int64_t(gridDim.x) * blockDim.x) {
    if ((sorted_keys[j] & 1u) == positive_tie_bit) local_sum += j;
  }
  const long long total = block_sum(local_sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// One block per task: that task's partials added in a fixed order. position_partials holds, per
// task, `blocks` partials for the negatives-first order, then `blocks` for positives-first.
__global__ void finish_metric_totals_kernel(const BlockTotals* partials,
                                            const long long* position_partials, int blocks,
                                            DeviceTaskTotals* totals) {
  const int task = blockIdx.x;
  const BlockTotals* task_partials = partials + std::int64_t(task) * blocks;
  const long long* negatives_first = position_partials + std::int64_t(task) * 2 * blocks;
  const long long* positives_first = negatives_first + blocks;
  long long positives = 0, nan_samples = 0, sum_negatives_first = 0, sum_positives_first = 0;
  double log_loss_sum = 0.0, squared_error_sum = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
    positives += task_partials[b].positives;
    nan_samples += task_partials[b].nan_samples;
    log_loss_sum += task_partials[b].log_loss_sum;
    squared_error_sum += task_partials[b].squared_error_sum;
    sum_negatives_first += negatives_first[b];
    sum_positives_first += positives_first[b];
  }
  DeviceTaskTotals result;
  result.positives = block_sum(positives);
  __syncthreads();
  result.nan_samples = block_sum(nan_samples);
  __syncthreads();
  result.position_sum_negatives_first = block_sum(sum_negatives_first);
  __syncthreads();
  result.position_sum_positives_first = block_sum(sum_positives_first);
  __syncthreads();
  result.log_loss_sum = block_sum(log_loss_sum);
  __syncthreads();
  result.squared_error_sum = block_sum(squared_error_sum);
  if (threadIdx.x == 0) totals[task] = result;
}

}  // namespace

void evaluation_metrics(const Context& ctx, const MetricInputs& inputs,
                        std::span<const MetricTaskSpec> specs,
                        std::span<TaskMetricTotals> results) {
  const cudaStream_t stream = stream_of(ctx);
  const int tasks = static_cast<int>(specs.size());
  const std::int64_t samples = inputs.samples;
  if (tasks == 0) return;
  if (samples == 0) {
    for (TaskMetricTotals& totals : results) {
      totals = TaskMetricTotals{};
      totals.roc_auc = roc_auc_from_counts(0, 0, 0);
    }
    return;
  }
  DeviceMetricSpecs device_specs{};
  bool any_auc = false;
  for (int k = 0; k < tasks; ++k) {
    device_specs.score_column[k] = specs[k].score_column;
    device_specs.label_column[k] = specs[k].label_column;
    any_auc = any_auc || specs[k].roc_auc;
  }
  const int blocks = static_cast<int>(std::min<unsigned>(grid_for(samples), kMaxMetricBlocks));
  const std::size_t partial_count = std::size_t(blocks) * std::size_t(tasks);
  const StreamScratch<BlockTotals> partials(partial_count, stream);
  const StreamScratch<long long> position_partials(2 * partial_count, stream);
  const StreamScratch<DeviceTaskTotals> device_totals(std::size_t(tasks), stream);
  // Tasks without an AUC keep zero position sums.
  DRGRAD_CUDA_CHECK(
      cudaMemsetAsync(position_partials.data(), 0, 2 * partial_count * sizeof(long long), stream));

  column_totals_kernel<<<dim3(blocks, tasks), kBlockSize, 0, stream>>>(inputs, device_specs,
                                                                       partials.data());
  DRGRAD_CUDA_CHECK_LAUNCH(column_totals_kernel);

  if (any_auc) {
    // Keys in a double buffer: CUB sorts back and forth between the two halves, so the sort needs
    // only a small temporary storage of its own.
    const StreamScratch<std::uint64_t> key_storage(2 * std::size_t(samples), stream);
    cub::DoubleBuffer<std::uint64_t> keys(key_storage.data(), key_storage.data() + samples);
    std::size_t temporary_bytes = 0;
    DRGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, temporary_bytes, keys, samples, 0,
                                                     kRankKeyBits, stream));
    // At least one byte: a null storage pointer would turn the sort below into a size query.
    temporary_bytes = std::max<std::size_t>(temporary_bytes, 1);
    const StreamScratch<unsigned char> temporary(temporary_bytes, stream);
    const unsigned key_blocks = grid_for(samples);
    for (int k = 0; k < tasks; ++k) {
      if (!specs[k].roc_auc) continue;
      for (const unsigned positive_tie_bit : {1u, 0u}) {  // negatives first, then positives first
        rank_keys_kernel<<<key_blocks, kBlockSize, 0, stream>>>(
            inputs, specs[k].score_column, specs[k].label_column, positive_tie_bit, keys.Current());
        DRGRAD_CUDA_CHECK_LAUNCH(rank_keys_kernel);
        DRGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(temporary.data(), temporary_bytes, keys,
                                                         samples, 0, kRankKeyBits, stream));
        long long* task_positions = position_partials.data() + std::size_t(k) * 2 * blocks +
                                    (positive_tie_bit == 1u ? 0 : blocks);
        positive_position_sums_kernel<<<blocks, kBlockSize, 0, stream>>>(
            keys.Current(), samples, positive_tie_bit, task_positions);
        DRGRAD_CUDA_CHECK_LAUNCH(positive_position_sums_kernel);
      }
    }
  }

  finish_metric_totals_kernel<<<tasks, kBlockSize, 0, stream>>>(
      partials.data(), position_partials.data(), blocks, device_totals.data());
  DRGRAD_CUDA_CHECK_LAUNCH(finish_metric_totals_kernel);
  std::vector<DeviceTaskTotals> host_totals(static_cast<std::size_t>(tasks));
  DRGRAD_CUDA_CHECK(cudaMemcpyAsync(host_totals.data(), device_totals.data(),
                                    host_totals.size() * sizeof(DeviceTaskTotals),
                                    cudaMemcpyDeviceToHost, stream));
  DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));

  for (int k = 0; k < tasks; ++k) {
    const DeviceTaskTotals& device = host_totals[std::size_t(k)];
    TaskMetricTotals& totals = results[std::size_t(k)];
    totals.samples = samples;
    totals.positives = device.positives;
    totals.log_loss_sum = device.log_loss_sum;
    totals.squared_error_sum = device.squared_error_sum;
    totals.nan_samples = specs[k].roc_auc ? device.nan_samples : 0;
    if (specs[k].roc_auc && totals.nan_samples == 0) {
      const std::int64_t positives = device.positives;
      const std::int64_t twice_u = rank_keys::twice_u_from_position_sums(
          device.position_sum_negatives_first, device.position_sum_positives_first, positives);
      totals.roc_auc = roc_auc_from_counts(twice_u, positives, samples - positives);
    } else {
      totals.roc_auc = roc_auc_from_counts(0, 0, 0);
    }
  }
}

}  // namespace drgrad::kernels::cuda
