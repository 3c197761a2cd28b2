// CUDA twin of the gradient-surgery passes: the Gram matrix of a [tasks, n] matrix (the device-side
// pass of task_gradient_gram_cuda.cu, then one copy to the host) and the weighted combination of
// its rows. The weights arrive by value, so no host-to-device copy is needed.
#include <cuda_runtime.h>

#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/multitask/gradient_surgery.h"
#include "kernels/multitask/task_gradient_gram.h"

namespace drgrad::kernels::cuda {
namespace {

struct TaskWeights {
  double value[kMaxSurgeryTasks];
};

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
  // The device-side pass (one read of the rows for up to kMaxFusedGramTasks tasks) into a zeroed
  // scratch matrix, then one copy to the host.
  const cudaStream_t stream = stream_of(ctx);
  const std::size_t bytes = static_cast<std::size_t>(tasks * tasks) * sizeof(double);
  void* scratch = allocate_async(bytes, stream);
  std::vector<double> totals(static_cast<std::size_t>(tasks * tasks));
  try {
    DRGRAD_CUDA_CHECK(cudaMemsetAsync(scratch, 0, bytes, stream));
    cuda::accumulate_task_gram_on_device(ctx, gradients, tasks, n, static_cast<double*>(scratch));
    cuda::read_task_gram(ctx, static_cast<double*>(scratch), tasks, totals.data());
  } catch (...) {
    // Already failing: report the first error. release_async, not cudaFreeAsync: inside a CUDA
    // graph capture the scratch is the graph's memory (kernels/core/cuda_graph.h).
    try {
      release_async(scratch, stream);
    } catch (...) {
    }
    throw;
  }
  release_async(scratch, stream);
  for (std::size_t e = 0; e < totals.size(); ++e) gram[e] += totals[e];
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
