// CUDA twin of the gradient-surgery passes: the Gram matrix of a [tasks, n] matrix (every pair of
// rows reduced in double, in a fixed shape so results repeat bit for bit) and the weighted
// combination of its rows. The weights arrive by value, so no host-to-device copy is needed.
#include <cuda_runtime.h>

#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/multitask/gradient_surgery.h"

namespace drgrad::kernels::cuda {
namespace {

// Blocks per pair in the first pass; fixed, so the grouping of terms never changes.
constexpr int kGramBlocks = 64;

struct TaskWeights {
  double value[kMaxSurgeryTasks];
};

// blockIdx.y is the pair (first[p], second[p]); blockIdx.x one of kGramBlocks partial sums.
__global__ void gram_partials_kernel(const float* gradients, std::int64_t n, const int* first,
                                     const int* second, double* partials) {
  const int pair = blockIdx.y;
  const float* a = gradients + first[pair] * n;
  const float* b = gradients + second[pair] * n;
  double local_sum = 0.0;
  for (std::int64_t x = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; x < n;
       x += std::int64_t(gridDim.x) * blockDim.x) {
    local_sum += static_cast<double>(a[x]) * static_cast<double>(b[x]);
  }
  const double total = block_sum(local_sum);
  if (threadIdx.x == 0) partials[pair * kGramBlocks + blockIdx.x] = total;
}

// One block per pair adds its kGramBlocks partial sums.
__global__ void gram_totals_kernel(const double* partials, double* totals) {
  double local_sum = 0.0;
  for (int i = threadIdx.x; i < kGramBlocks; i += blockDim.x) {
    local_sum += partials[blockIdx.x * kGramBlocks + i];
  }
  const double total = block_sum(local_sum);
  if (threadIdx.x == 0) totals[blockIdx.x] = total;
}

__global__ void combine_kernel(const float* gradients, std::int64_t tasks, std::int64_t n,
                               TaskWeights weights, float* out) {
  for (std::int64_t x = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; x < n;
       x += std::int64_t(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (std::int64_t i = 0; i < tasks; ++i) total += weights.value[i] * gradients[i * n + x];
    out[x] = static_cast<float>(total);
  }
}

}  // namespace

void accumulate_task_gram(const Context& ctx, const float* gradients, std::int64_t tasks,
                          std::int64_t n, double* gram) {
  if (n == 0) return;
  std::vector<int> first, second;
  for (int i = 0; i < tasks; ++i) {
    for (int j = i; j < tasks; ++j) {
      first.push_back(i);
      second.push_back(j);
    }
  }
  const int pairs = static_cast<int>(first.size());
  const cudaStream_t stream = stream_of(ctx);
  // One scratch block: the pair table, kGramBlocks partial sums per pair, one total per pair.
  const std::size_t pair_bytes = 2 * static_cast<std::size_t>(pairs) * sizeof(int);
  const std::size_t partial_offset = (pair_bytes + sizeof(double) - 1) / sizeof(double);
  void* scratch = nullptr;
  DRGRAD_CUDA_CHECK(cudaMallocAsync(
      &scratch,
      (partial_offset + static_cast<std::size_t>(pairs) * (kGramBlocks + 1)) * sizeof(double),
      stream));
  int* device_pairs = static_cast<int*>(scratch);
  double* device_partials = static_cast<double*>(scratch) + partial_offset;
  double* device_totals = device_partials + static_cast<std::size_t>(pairs) * kGramBlocks;
  std::vector<double> totals(static_cast<std::size_t>(pairs));
  try {
    DRGRAD_CUDA_CHECK(cudaMemcpyAsync(device_pairs, first.data(), pairs * sizeof(int),
                                      cudaMemcpyHostToDevice, stream));
    DRGRAD_CUDA_CHECK(cudaMemcpyAsync(device_pairs + pairs, second.data(), pairs * sizeof(int),
                                      cudaMemcpyHostToDevice, stream));
    gram_partials_kernel<<<dim3(kGramBlocks, pairs), kBlockSize, 0, stream>>>(
        gradients, n, device_pairs, device_pairs + pairs, device_partials);
    DRGRAD_CUDA_CHECK_LAUNCH(gram_partials_kernel);
    gram_totals_kernel<<<pairs, kBlockSize, 0, stream>>>(device_partials, device_totals);
    DRGRAD_CUDA_CHECK_LAUNCH(gram_totals_kernel);
    DRGRAD_CUDA_CHECK(cudaMemcpyAsync(totals.data(), device_totals, pairs * sizeof(double),
                                      cudaMemcpyDeviceToHost, stream));
    DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    static_cast<void>(cudaFreeAsync(scratch, stream));  // already failing: report the first error
    throw;
  }
  DRGRAD_CUDA_CHECK(cudaFreeAsync(scratch, stream));
  for (int p = 0; p < pairs; ++p) {
    gram[first[p] * tasks + second[p]] += totals[p];
    if (first[p] != second[p]) gram[second[p] * tasks + first[p]] += totals[p];
  }
}

void combine_task_gradients(const Context& ctx, const float* gradients, std::int64_t tasks,
                            std::int64_t n, const double* weights, float* out) {
  if (n == 0) return;
  TaskWeights by_value{};
  for (std::int64_t i = 0; i < tasks; ++i) by_value.value[i] = weights[i];
  combine_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(gradients, tasks, n, by_value,
                                                                 out);
  DRGRAD_CUDA_CHECK_LAUNCH(combine_kernel);
}

}  // namespace drgrad::kernels::cuda
