// CUDA twin of kernels/loss: one thread per sample (grid-stride) for gradient and prediction, and
// deterministic loss sums: each block writes its partial sum, then one block adds the partials in
// a fixed order, so the same inputs give the same bits on every run. The multi-task op covers all
// tasks in one launch (one row of blocks per task).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/loss/loss.h"
#include "kernels/loss/loss_math.h"

namespace drgrad::kernels::cuda {
namespace {

// At most this many partial sums: the loss kernels run with at most this many blocks and loop
// over the rest, which keeps the second pass a single small block.
constexpr int kMaxLossBlocks = 1024;

// At most this many blocks per task in multitask_loss: a task's partial sums fit one block's
// loop, and the grid (hence the summation order) depends on the batch size only, not the device.
constexpr int kMaxMultiTaskLossBlocks = 256;

template <TaskLoss kLoss>
__global__ void task_loss_kernel(TaskLossColumn<float> column, float positive_weight,
                                 float* block_sums) {
  float local_sum = 0.f;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < column.batch_size;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float z = column.logits[i * column.logit_stride];
    const float y = column.labels[i * column.label_stride];
    loss_math::SampleLoss<float> sample;
    if constexpr (kLoss == TaskLoss::kSigmoidCrossEntropy) {
      sample = loss_math::sigmoid_cross_entropy_sample(z, y, positive_weight);
    } else {
      sample = loss_math::squared_error_sample(z, y);
    }
    local_sum += sample.loss;
    if (column.gradient != nullptr) {
      column.gradient[i * column.output_stride] = sample.gradient * column.gradient_scale;
    }
    if (column.prediction != nullptr) {
      column.prediction[i * column.output_stride] = sample.prediction;
    }
  }
  if (block_sums == nullptr) return;  // uniform across the block: nobody waits at the barrier
  const float total = block_sum(local_sum);
  if (threadIdx.x == 0) block_sums[blockIdx.x] = total;
}

// One block: *result = sum of values[0..count), in a fixed order.
__global__ void sum_partials_kernel(const float* values, int count, float* result) {
  float local_sum = 0.f;
  for (int i = threadIdx.x; i < count; i += blockDim.x) local_sum += values[i];
  const float total = block_sum(local_sum);
  if (threadIdx.x == 0) *result = total;
}

// Stream-ordered scratch for `count` values of T (per-block partial sums), freed on the same
// stream also when a launch check throws.
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

// The task specs as one kernel argument (by value: no upload, nothing to free, fine in a graph).
struct DeviceTaskSpecs {
  TaskLoss loss[kMaxLossTasks];
  float positive_weight[kMaxLossTasks];
  float gradient_scale[kMaxLossTasks];
  std::int64_t label_column[kMaxLossTasks];
};

// Grid (blocks_per_task, tasks): block (b, k) walks task k's samples b, b + blocks_per_task, ...
// in steps of the grid's width and writes its partial loss sum and non-finite count to
// [k * blocks_per_task + b] when partial_sums is given. A task's logits are a strided column
// (stride = tasks), so with several tasks a warp's reads span several cache lines; for the few
// tasks of these models that is small next to the model's own traffic (not measured yet).
__global__ void multitask_loss_kernel(MultiTaskLossBatch<float> batch, DeviceTaskSpecs specs,
                                      float* partial_sums, long long* partial_counts) {
  const int task = blockIdx.y;
  const TaskLoss loss = specs.loss[task];
  const float weight = specs.positive_weight[task];
  const float scale = specs.gradient_scale[task];
  const std::int64_t label_column = specs.label_column[task];
  float local_sum = 0.f;
  long long local_count = 0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < batch.batch_size;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t element = i * batch.tasks + task;
    const float z = batch.logits[element];
    const float y = batch.labels[i * batch.label_columns + label_column];
    const loss_math::SampleLoss<float> sample =
        loss == TaskLoss::kSigmoidCrossEntropy
            ? loss_math::sigmoid_cross_entropy_sample(z, y, weight)
            : loss_math::squared_error_sample(z, y);
    local_sum += sample.loss;
    local_count += loss_math::is_finite(sample.loss) ? 0 : 1;
    if (batch.gradient != nullptr) batch.gradient[element] = sample.gradient * scale;
    if (batch.prediction != nullptr) batch.prediction[element] = sample.prediction;
  }
  if (partial_sums == nullptr) return;  // uniform across the grid: nobody waits at a barrier
  const float total = block_sum(local_sum);
  __syncthreads();  // block_sum's shared array is read by thread 0 before the next use
  const long long count = block_sum(local_count);
  if (threadIdx.x == 0) {
    partial_sums[task * gridDim.x + blockIdx.x] = total;
    partial_counts[task * gridDim.x + blockIdx.x] = count;
  }
}

// One block: loss_sums[k] = sum of task k's partials in a fixed order, and the total count.
__global__ void finish_multitask_loss_kernel(const float* partial_sums,
                                             const long long* partial_counts, int tasks,
                                             int blocks_per_task, float* loss_sums,
                                             std::int64_t* non_finite_losses) {
  long long count_total = 0;
  for (int task = 0; task < tasks; ++task) {
    float local_sum = 0.f;
    long long local_count = 0;
    for (int b = threadIdx.x; b < blocks_per_task; b += blockDim.x) {
      local_sum += partial_sums[task * blocks_per_task + b];
      local_count += partial_counts[task * blocks_per_task + b];
    }
    const float total = block_sum(local_sum);
    __syncthreads();
    const long long count = block_sum(local_count);
    __syncthreads();
    if (threadIdx.x == 0) {
      if (loss_sums != nullptr) loss_sums[task] = total;
      count_total += count;
    }
  }
  if (threadIdx.x == 0 && non_finite_losses != nullptr) *non_finite_losses = count_total;
}

template <TaskLoss kLoss>
void launch_task_loss(const Context& ctx, const TaskLossColumn<float>& column,
                      float positive_weight) {
  const cudaStream_t stream = stream_of(ctx);
  if (column.batch_size == 0) {
    if (column.loss_sum != nullptr) {
      DRGRAD_CUDA_CHECK(cudaMemsetAsync(column.loss_sum, 0, sizeof(float), stream));
    }
    return;
  }
  const unsigned blocks = std::min<unsigned>(grid_for(column.batch_size), kMaxLossBlocks);
  if (column.loss_sum == nullptr) {
    task_loss_kernel<kLoss><<<blocks, kBlockSize, 0, stream>>>(column, positive_weight, nullptr);
    DRGRAD_CUDA_CHECK_LAUNCH(task_loss_kernel);
    return;
  }
  const StreamScratch<float> block_sums(blocks, stream);
  task_loss_kernel<kLoss>
      <<<blocks, kBlockSize, 0, stream>>>(column, positive_weight, block_sums.data());
  DRGRAD_CUDA_CHECK_LAUNCH(task_loss_kernel);
  sum_partials_kernel<<<1, kBlockSize, 0, stream>>>(block_sums.data(), static_cast<int>(blocks),
                                                    column.loss_sum);
  DRGRAD_CUDA_CHECK_LAUNCH(sum_partials_kernel);
}

}  // namespace

void sigmoid_cross_entropy(const Context& ctx, const TaskLossColumn<float>& column,
                           float positive_weight) {
  launch_task_loss<TaskLoss::kSigmoidCrossEntropy>(ctx, column, positive_weight);
}

void squared_error(const Context& ctx, const TaskLossColumn<float>& column) {
  launch_task_loss<TaskLoss::kSquaredError>(ctx, column, 1.f);
}

void multitask_loss(const Context& ctx, const MultiTaskLossBatch<float>& batch,
                    std::span<const TaskLossSpec> specs) {
  const cudaStream_t stream = stream_of(ctx);
  const bool wants_sums = batch.loss_sums != nullptr || batch.non_finite_losses != nullptr;
  if (batch.batch_size == 0) {
    if (batch.loss_sums != nullptr) {
      DRGRAD_CUDA_CHECK(
          cudaMemsetAsync(batch.loss_sums, 0, std::size_t(batch.tasks) * sizeof(float), stream));
    }
    if (batch.non_finite_losses != nullptr) {
      DRGRAD_CUDA_CHECK(cudaMemsetAsync(batch.non_finite_losses, 0, sizeof(std::int64_t), stream));
    }
    return;
  }
  DeviceTaskSpecs device_specs{};
  for (std::size_t k = 0; k < specs.size(); ++k) {
    device_specs.loss[k] = specs[k].loss;
    device_specs.positive_weight[k] = specs[k].positive_weight;
    device_specs.gradient_scale[k] = static_cast<float>(specs[k].gradient_scale);
    device_specs.label_column[k] = specs[k].label_column;
  }
  const unsigned blocks_per_task =
      std::min<unsigned>(grid_for(batch.batch_size), kMaxMultiTaskLossBlocks);
  const dim3 grid(blocks_per_task, static_cast<unsigned>(batch.tasks));
  if (!wants_sums) {
    multitask_loss_kernel<<<grid, kBlockSize, 0, stream>>>(batch, device_specs, nullptr, nullptr);
    DRGRAD_CUDA_CHECK_LAUNCH(multitask_loss_kernel);
    return;
  }
  const std::size_t partials = std::size_t(blocks_per_task) * std::size_t(batch.tasks);
  const StreamScratch<float> partial_sums(partials, stream);
  const StreamScratch<long long> partial_counts(partials, stream);
  multitask_loss_kernel<<<grid, kBlockSize, 0, stream>>>(batch, device_specs, partial_sums.data(),
                                                         partial_counts.data());
  DRGRAD_CUDA_CHECK_LAUNCH(multitask_loss_kernel);
  finish_multitask_loss_kernel<<<1, kBlockSize, 0, stream>>>(
      partial_sums.data(), partial_counts.data(), static_cast<int>(batch.tasks),
      static_cast<int>(blocks_per_task), batch.loss_sums, batch.non_finite_losses);
  DRGRAD_CUDA_CHECK_LAUNCH(finish_multitask_loss_kernel);
}

}  // namespace drgrad::kernels::cuda
