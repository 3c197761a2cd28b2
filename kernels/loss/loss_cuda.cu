// CUDA twin of kernels/loss: one thread per sample (grid-stride) for gradient and prediction, and
// a deterministic loss sum: each block writes its partial sum, then one block adds the partials in
// a fixed order, so the same inputs give the same bits on every run.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/loss/loss.h"

namespace drgrad::kernels::cuda {
namespace {

// At most this many partial sums: the loss kernels run with at most this many blocks and loop
// over the rest, which keeps the second pass a single small block.
constexpr int kMaxLossBlocks = 1024;

__device__ float stable_softplus(float x) {
  return fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));
}
__device__ float sigmoid(float x) {
  return x >= 0.f ? 1.f / (1.f + expf(-x)) : expf(x) / (1.f + expf(x));
}

template <TaskLoss kLoss>
__global__ void task_loss_kernel(TaskLossColumn<float> column, float positive_weight,
                                 float* block_sums) {
  float local_sum = 0.f;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < column.batch_size;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float z = column.logits[i * column.logit_stride];
    const float y = column.labels[i * column.label_stride];
    float gradient = 0.f, prediction = 0.f;
    if constexpr (kLoss == TaskLoss::kSigmoidCrossEntropy) {
      const float weighted_y = positive_weight * y;
      prediction = sigmoid(z);
      local_sum += weighted_y * stable_softplus(-z) + (1.f - y) * stable_softplus(z);
      gradient = (weighted_y + 1.f - y) * prediction - weighted_y;
    } else {
      const float difference = z - y;
      prediction = z;
      local_sum += difference * difference;
      gradient = 2.f * difference;
    }
    if (column.gradient != nullptr) {
      column.gradient[i * column.output_stride] = gradient * column.gradient_scale;
    }
    if (column.prediction != nullptr) column.prediction[i * column.output_stride] = prediction;
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

// Stream-ordered scratch for the per-block partial sums, freed on the same stream also when a
// launch check throws.
class PartialSums {
 public:
  PartialSums(unsigned count, cudaStream_t stream) : stream_(stream) {
    DRGRAD_CUDA_CHECK(cudaMallocAsync(&data_, count * sizeof(float), stream));
  }
  PartialSums(const PartialSums&) = delete;
  PartialSums& operator=(const PartialSums&) = delete;
  ~PartialSums() { cudaFreeAsync(data_, stream_); }  // nothing to do about an error here
  float* data() const { return data_; }

 private:
  float* data_ = nullptr;
  cudaStream_t stream_;
};

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
  const PartialSums block_sums(blocks, stream);
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

}  // namespace drgrad::kernels::cuda
