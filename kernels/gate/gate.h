// Mixture-of-experts gating: a row-wise softmax over gate logits, and the gated combination of
// expert outputs, out[b] = sum_e gate[b, e] * experts[e][b], with their backward passes, as
// separate ops and fused (softmax and combination in one pass each way).
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Which experts of a level a gate mixes, in gate-column order (PLE gates see a subset). Passed
// by value so that CUDA kernels receive it as a launch argument.
struct ExpertSelection {
  static constexpr int kMaxExperts = 64;
  int count = 0;
  int index[kMaxExperts] = {};
};

// probabilities[r, :] = softmax(logits[r, :]) over `cols` columns; may alias.
template <typename T>
void softmax_rows_forward(const Context& ctx, const T* logits, T* probabilities, std::int64_t rows,
                          std::int64_t cols);
// d_logits = p * (d_p - sum_c d_p * p), row-wise; d_logits may alias d_probabilities.
template <typename T>
void softmax_rows_backward(const Context& ctx, const T* probabilities, const T* d_probabilities,
                           T* d_logits, std::int64_t rows, std::int64_t cols);

// experts: [num_experts_total, batch, dim] (expert-major); gate: [batch, selection.count];
// out[b, j] = sum_i gate[b, i] * experts[selection.index[i], b, j].
template <typename T>
void gated_combination_forward(const Context& ctx, const T* experts, const T* gate,
                               const ExpertSelection& selection, std::int64_t batch,
                               std::int64_t dim, T* out);
// d_experts[selection.index[i], b, j] += gate[b, i] * d_out[b, j]   (accumulates: several gates
//   read the same experts);
// d_gate[b, i] = sum_j experts[selection.index[i], b, j] * d_out[b, j]   (overwrites).
template <typename T>
void gated_combination_backward(const Context& ctx, const T* experts, const T* gate, const T* d_out,
                                const ExpertSelection& selection, std::int64_t batch,
                                std::int64_t dim, T* d_experts, T* d_gate);

// The softmax gate and the gated combination in one op (one kernel on CUDA).
// logits: [batch, selection.count]; experts: [num_experts_total, batch, dim] (expert-major).
// Writes probabilities[b, :] = softmax(logits[b, :]) (kept for the backward; may alias logits)
// and out[b, j] = sum_i probabilities[b, i] * experts[selection.index[i], b, j].
// Equals softmax_rows_forward followed by gated_combination_forward (bit for bit on the CPU).
template <typename T>
void gate_combine_forward(const Context& ctx, const T* logits, const T* experts,
                          const ExpertSelection& selection, std::int64_t batch, std::int64_t dim,
                          T* probabilities, T* out);
// Backward of gate_combine_forward, from the probabilities it wrote:
// d_experts[selection.index[i], b, j] += probabilities[b, i] * d_out[b, j]   (accumulates, as in
//   gated_combination_backward);
// d_logits[b, i] = p[b, i] * (d_p[b, i] - sum_c p[b, c] * d_p[b, c])   (overwrites), where
//   d_p[b, i] = sum_j experts[selection.index[i], b, j] * d_out[b, j].
// Equals gated_combination_backward followed by softmax_rows_backward (bit for bit on the CPU).
// d_logits must not alias any input.
template <typename T>
void gate_combine_backward(const Context& ctx, const T* experts, const T* probabilities,
                           const T* d_out, const ExpertSelection& selection, std::int64_t batch,
                           std::int64_t dim, T* d_experts, T* d_logits);
// gate_combine_backward for `tasks` upstream gradients through the same probabilities and
// experts (one per task): d_out_stacked [tasks, batch, dim]; d_experts_stacked [tasks,
// num_experts_total, batch, dim] (accumulates, task k into its own slice); d_logits_stacked
// [tasks, batch, selection.count] (overwrites). Equals gate_combine_backward for each task in
// turn (bit for bit on the CPU).
template <typename T>
void gate_combine_backward_stacked(const Context& ctx, const T* experts, const T* probabilities,
                                   const T* d_out_stacked, const ExpertSelection& selection,
                                   std::int64_t tasks, std::int64_t num_experts_total,
                                   std::int64_t batch, std::int64_t dim, T* d_experts_stacked,
                                   T* d_logits_stacked);

namespace cpu {
template <typename T>
void softmax_rows_forward(const T* logits, T* probabilities, std::int64_t rows, std::int64_t cols);
template <typename T>
void softmax_rows_backward(const T* probabilities, const T* d_probabilities, T* d_logits,
                           std::int64_t rows, std::int64_t cols);
template <typename T>
void gated_combination_forward(const T* experts, const T* gate, const ExpertSelection& selection,
                               std::int64_t batch, std::int64_t dim, T* out);
template <typename T>
void gated_combination_backward(const T* experts, const T* gate, const T* d_out,
                                const ExpertSelection& selection, std::int64_t batch,
                                std::int64_t dim, T* d_experts, T* d_gate);
template <typename T>
void gate_combine_forward(const T* logits, const T* experts, const ExpertSelection& selection,
                          std::int64_t batch, std::int64_t dim, T* probabilities, T* out);
template <typename T>
void gate_combine_backward(const T* experts, const T* probabilities, const T* d_out,
                           const ExpertSelection& selection, std::int64_t batch, std::int64_t dim,
                           T* d_experts, T* d_logits);
template <typename T>
void gate_combine_backward_stacked(const T* experts, const T* probabilities, const T* d_out_stacked,
                                   const ExpertSelection& selection, std::int64_t tasks,
                                   std::int64_t num_experts_total, std::int64_t batch,
                                   std::int64_t dim, T* d_experts_stacked, T* d_logits_stacked);
}  // namespace cpu

namespace cuda {
void softmax_rows_forward(const Context& ctx, const float* logits, float* probabilities,
                          std::int64_t rows, std::int64_t cols);
void softmax_rows_backward(const Context& ctx, const float* probabilities,
                           const float* d_probabilities, float* d_logits, std::int64_t rows,
                           std::int64_t cols);
void gated_combination_forward(const Context& ctx, const float* experts, const float* gate,
                               const ExpertSelection& selection, std::int64_t batch,
                               std::int64_t dim, float* out);
void gated_combination_backward(const Context& ctx, const float* experts, const float* gate,
                                const float* d_out, const ExpertSelection& selection,
                                std::int64_t batch, std::int64_t dim, float* d_experts,
                                float* d_gate);
void gate_combine_forward(const Context& ctx, const float* logits, const float* experts,
                          const ExpertSelection& selection, std::int64_t batch, std::int64_t dim,
                          float* probabilities, float* out);
void gate_combine_backward(const Context& ctx, const float* experts, const float* probabilities,
                           const float* d_out, const ExpertSelection& selection, std::int64_t batch,
                           std::int64_t dim, float* d_experts, float* d_logits);
void gate_combine_backward_stacked(const Context& ctx, const float* experts,
                                   const float* probabilities, const float* d_out_stacked,
                                   const ExpertSelection& selection, std::int64_t tasks,
                                   std::int64_t num_experts_total, std::int64_t batch,
                                   std::int64_t dim, float* d_experts_stacked,
                                   float* d_logits_stacked);
}  // namespace cuda

}  // namespace drgrad::kernels
