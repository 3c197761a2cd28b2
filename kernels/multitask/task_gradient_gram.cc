// CPU twin of the per-task gradient pass with its Gram matrix (the same products and column sums
// as the unfused layer backward, then the Gram of the final values in double), the device-side
// Gram accumulation, and the dispatch to CUDA.
#include "kernels/multitask/task_gradient_gram.h"

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/core/dispatch.h"
#include "kernels/dense/gemm.h"
#include "kernels/multitask/gradient_surgery.h"
#include "kernels/multitask/task_gram_arithmetic.h"

namespace drgrad::kernels {

namespace {
std::atomic<TaskGramPath> selected_path{TaskGramPath::kFusedKernel};

void check_tasks(std::int64_t tasks, const char* where) {
  if (tasks < 1 || tasks > kMaxSurgeryTasks) {
    throw std::invalid_argument(std::string(where) + ": takes 1 to " +
                                std::to_string(kMaxSurgeryTasks) + " tasks, got " +
                                std::to_string(tasks));
  }
}

void check_shape(const TaskGradientShape& shape) {
  check_tasks(shape.tasks, "task_gradients_with_gram");
  if (shape.batch < 0 || shape.in_features < 0 || shape.out_features < 0) {
    throw std::invalid_argument(
        "task_gradients_with_gram: negative size (batch " + std::to_string(shape.batch) + ", in " +
        std::to_string(shape.in_features) + ", out " + std::to_string(shape.out_features) + ")");
  }
}

// The upper-triangle Gram sums of rows [K, n], each entry summed over x in increasing order.
template <typename T>
std::vector<double> upper_gram(const T* rows, std::int64_t tasks, std::int64_t n) {
  std::vector<double> pairs(static_cast<std::size_t>(task_gram::pair_count(int(tasks))), 0.0);
  for (std::int64_t x = 0; x < n; ++x) {
    task_gram::add_position_products(rows + x, n, int(tasks), pairs.data());
  }
  return pairs;
}
}  // namespace

void set_task_gram_path(TaskGramPath path) {
  selected_path.store(path);
}
TaskGramPath task_gram_path() {
  return selected_path.load();
}

namespace cpu {

template <typename T>
void task_gradients_with_gram(const TaskGradientShape& shape, const T* input, const T* upstream,
                              T beta, const TaskGradientTargets<T>& targets, GramUpdate update) {
  const std::int64_t tasks = shape.tasks, batch = shape.batch;
  const std::int64_t in = shape.in_features, out = shape.out_features;
  // dW_k = beta dW_k + X^T dY_k: the layer's unfused batched product, bit for bit.
  if (in > 0 && out > 0) {
    const GemmShape product{true, false, in, out, batch, in, out, out};
    const GemmBatch stacked{tasks, 0, batch * out, in * out};
    if (batch > 0) {
      gemm_strided_batched<T>(product, stacked, T(1), input, upstream, beta,
                              targets.weight_gradients);
    } else {
      for (std::int64_t i = 0; i < tasks * in * out; ++i) {
        targets.weight_gradients[i] = beta == T(0) ? T(0) : beta * targets.weight_gradients[i];
      }
    }
  }
  if (targets.bias_gradients != nullptr) {
    for (std::int64_t k = 0; k < tasks; ++k) {
      T* sums = targets.bias_gradients + k * out;
      if (beta == T(0)) {
        for (std::int64_t c = 0; c < out; ++c) sums[c] = T(0);
      }
      column_sums<T>(upstream + k * batch * out, out, batch, out, beta == T(0) ? T(1) : beta, sums);
    }
  }
  const bool overwrite = update == GramUpdate::kOverwrite;
  const bool shared_gram = targets.weight_gram != nullptr &&
                           targets.weight_gram == targets.bias_gram &&
                           targets.bias_gradients != nullptr;
  std::vector<double> weight_pairs, bias_pairs;
  if (targets.weight_gram != nullptr) {
    weight_pairs = upper_gram(targets.weight_gradients, tasks, in * out);
  }
  if (targets.bias_gram != nullptr && targets.bias_gradients != nullptr) {
    bias_pairs = upper_gram(targets.bias_gradients, tasks, out);
  }
  for (int p = 0; p < task_gram::pair_count(int(tasks)); ++p) {
    if (shared_gram) {
      task_gram::store_pair(weight_pairs[p] + bias_pairs[p], p, int(tasks), overwrite,
                            targets.weight_gram);
      continue;
    }
    if (!weight_pairs.empty()) {
      task_gram::store_pair(weight_pairs[p], p, int(tasks), overwrite, targets.weight_gram);
    }
    if (!bias_pairs.empty()) {
      task_gram::store_pair(bias_pairs[p], p, int(tasks), overwrite, targets.bias_gram);
    }
  }
}

template <typename T>
void accumulate_task_gram_on_device(const T* gradients, std::int64_t tasks, std::int64_t n,
                                    double* gram) {
  // Device memory of the CPU is host memory: the host Gram pass, same order and bits.
  accumulate_task_gram<T>(gradients, tasks, n, gram);
}

#define DRGRAD_INSTANTIATE_CPU(T)                                                            \
  template void task_gradients_with_gram<T>(const TaskGradientShape&, const T*, const T*, T, \
                                            const TaskGradientTargets<T>&, GramUpdate);      \
  template void accumulate_task_gram_on_device<T>(const T*, std::int64_t, std::int64_t, double*);
DRGRAD_INSTANTIATE_CPU(float)
DRGRAD_INSTANTIATE_CPU(double)
#undef DRGRAD_INSTANTIATE_CPU

}  // namespace cpu

template <typename T>
void task_gradients_with_gram(const Context& ctx, const TaskGradientShape& shape, const T* input,
                              const T* upstream, T beta, const TaskGradientTargets<T>& targets,
                              GramUpdate update) {
  check_shape(shape);
  if ((ctx).device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(cuda::task_gradients_with_gram(ctx, shape, input, upstream, beta, targets,
                                                      update, task_gram_path()));
      return;
    } else {
      throw_double_on_cuda("task_gradients_with_gram");
    }
  }
  cpu::task_gradients_with_gram(shape, input, upstream, beta, targets, update);
}

template <typename T>
void accumulate_task_gram_on_device(const Context& ctx, const T* gradients, std::int64_t tasks,
                                    std::int64_t n, double* gram) {
  check_tasks(tasks, "accumulate_task_gram_on_device");
  if (n < 0) {
    throw std::invalid_argument("accumulate_task_gram_on_device: negative length " +
                                std::to_string(n));
  }
  DRGRAD_DISPATCH(T, ctx, accumulate_task_gram_on_device, gradients, tasks, n, gram);
}

void add_task_gram(const Context& ctx, const double* source, std::int64_t tasks, double* gram) {
  check_tasks(tasks, "add_task_gram");
  if (ctx.device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::add_task_gram(ctx, source, tasks, gram));
    return;
  }
  for (std::int64_t i = 0; i < tasks * tasks; ++i) gram[i] += source[i];
}

void read_task_gram(const Context& ctx, const double* gram, std::int64_t tasks, double* host_gram) {
  check_tasks(tasks, "read_task_gram");
  if (ctx.device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::read_task_gram(ctx, gram, tasks, host_gram));
    return;
  }
  for (std::int64_t i = 0; i < tasks * tasks; ++i) host_gram[i] = gram[i];
}

#define DRGRAD_INSTANTIATE(T)                                                                   \
  template void task_gradients_with_gram<T>(const Context&, const TaskGradientShape&, const T*, \
                                            const T*, T, const TaskGradientTargets<T>&,         \
                                            GramUpdate);                                        \
  template void accumulate_task_gram_on_device<T>(const Context&, const T*, std::int64_t,       \
                                                  std::int64_t, double*);
DRGRAD_INSTANTIATE(float)
DRGRAD_INSTANTIATE(double)
#undef DRGRAD_INSTANTIATE

}  // namespace drgrad::kernels
