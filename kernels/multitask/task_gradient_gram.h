// Per-task gradients of a shared dense layer and the tasks' Gram matrix in one op: for K task
// upstreams dY_k of one forward pass, dW_k = X^T dY_k and db_k = column sums of dY_k, with the
// K x K Gram matrix of those gradients reduced in the same pass (what PCGrad and CAGrad need).
// Also the device-side Gram accumulation for parameters computed elsewhere, so that a whole
// parameter set reaches the host as K x K numbers in one read.
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// One call: K tasks, the shared input X [batch, in] and the stacked upstreams dY [K, batch, out].
struct TaskGradientShape {
  std::int64_t tasks = 1;
  std::int64_t batch = 0;
  std::int64_t in_features = 0;
  std::int64_t out_features = 0;
};

// Where the op writes. weight_gradients: [K, in, out]; bias_gradients: [K, out] or nullptr (no
// bias). weight_gram, bias_gram: K x K doubles (row-major) on ctx's device, or nullptr (no Gram).
// They may point to the same array, which then receives the Gram of the concatenated
// (weight, bias) gradients.
template <typename T>
struct TaskGradientTargets {
  T* weight_gradients = nullptr;
  T* bias_gradients = nullptr;
  double* weight_gram = nullptr;
  double* bias_gram = nullptr;
};

// kAdd: gram += G (several parameters add up to their concatenation); kOverwrite: gram = G.
enum class GramUpdate { kAdd, kOverwrite };

// For k < K:
//   dW_k = beta * dW_k + X^T dY_k          (beta = 0 ignores the old contents, even NaN)
//   db_k = beta * db_k + sum_b dY_k[b, :]
// and, when a Gram target is given, G_ij = <dW_i, dW_j> of the FINAL dW (after the beta term),
// summed in double, likewise for db. So with beta = 1 the Gram covers everything accumulated in
// dW so far, not only this call's product: overwriting a parameter's Gram after each
// accumulation keeps it equal to the Gram of the gradient the optimizer will see.
// The Gram is symmetric; both halves are written. Nothing is read back to the host and the call
// does not synchronise. Deterministic: the same inputs give the same bits on one device.
// Throws std::invalid_argument for a negative size or K outside 1..kMaxSurgeryTasks.
template <typename T>
void task_gradients_with_gram(const Context& ctx, const TaskGradientShape& shape, const T* input,
                              const T* upstream, T beta, const TaskGradientTargets<T>& targets,
                              GramUpdate update);

// How the CUDA twin computes task_gradients_with_gram when a Gram target is given (without one it
// is always cuBLAS batched + column sums). The CPU twin is the same arithmetic either way.
//  kFusedKernel: one hand-tiled kernel writes the K products and reduces the Gram from registers
//    (the gradients are written once and never read back), then a small fixed-order reduction.
//  kBatchedGemmThenGram: cublasSgemmStridedBatched and column sums, then a separate one-pass Gram
//    kernel over the written gradients (one more read of K * (in * out + out) floats).
// Which is faster depends on the shape and must be measured on the GPU (docs/gpu.md); until then
// the default is kFusedKernel. K above kMaxFusedGramTasks always takes the batched path.
enum class TaskGramPath { kFusedKernel, kBatchedGemmThenGram };
void set_task_gram_path(TaskGramPath path);
TaskGramPath task_gram_path();
inline constexpr std::int64_t kMaxFusedGramTasks = 8;

// gram (K x K doubles on ctx's device: host memory for the CPU) += the Gram matrix of the rows
// of gradients [K, n] on ctx's device. Like accumulate_task_gram, but the result stays on the
// device: no host read, no synchronisation.
template <typename T>
void accumulate_task_gram_on_device(const Context& ctx, const T* gradients, std::int64_t tasks,
                                    std::int64_t n, double* gram);

// gram += source (K x K doubles, both on ctx's device).
void add_task_gram(const Context& ctx, const double* source, std::int64_t tasks, double* gram);

// Copies the K x K device Gram to host_gram and waits for it (the one host read of a step: the
// PCGrad / CAGrad weights are solved on the host from these K * K numbers).
void read_task_gram(const Context& ctx, const double* gram, std::int64_t tasks, double* host_gram);

namespace cpu {
// gemm per task, column sums, then the Gram of the final values in double (each entry summed
// over the elements in order, the same order as cpu::accumulate_task_gram).
template <typename T>
void task_gradients_with_gram(const TaskGradientShape& shape, const T* input, const T* upstream,
                              T beta, const TaskGradientTargets<T>& targets, GramUpdate update);
template <typename T>
void accumulate_task_gram_on_device(const T* gradients, std::int64_t tasks, std::int64_t n,
                                    double* gram);
}  // namespace cpu

namespace cuda {
void task_gradients_with_gram(const Context& ctx, const TaskGradientShape& shape,
                              const float* input, const float* upstream, float beta,
                              const TaskGradientTargets<float>& targets, GramUpdate update,
                              TaskGramPath path);
void accumulate_task_gram_on_device(const Context& ctx, const float* gradients, std::int64_t tasks,
                                    std::int64_t n, double* gram);
void add_task_gram(const Context& ctx, const double* source, std::int64_t tasks, double* gram);
void read_task_gram(const Context& ctx, const double* gram, std::int64_t tasks, double* host_gram);
}  // namespace cuda

}  // namespace drgrad::kernels
