// Mixture-of-experts gating: a row-wise softmax over gate logits, and the gated combination of
// expert outputs, out[b] = sum_e gate[b, e] * experts[e][b], with their backward passes.
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
}  // namespace cuda

}  // namespace drgrad::kernels
