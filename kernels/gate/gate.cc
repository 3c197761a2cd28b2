// CPU twin of the softmax gates and gated combination (separate and fused), and the dispatch to
// CUDA. The fused CPU ops are the composition of the separate ones, so both paths give the same
// bits.
#include "kernels/gate/gate.h"

#include <algorithm>
#include <cmath>

#include "kernels/core/dispatch.h"
#include "kernels/gate/gate_math.h"

namespace drgrad::kernels {

namespace cpu {

template <typename T>
void softmax_rows_forward(const T* logits, T* probabilities, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* in = logits + r * cols;
    T* out = probabilities + r * cols;
    const T peak = *std::max_element(in, in + cols);
    T total = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      out[c] = std::exp(in[c] - peak);
      total += out[c];
    }
    for (std::int64_t c = 0; c < cols; ++c) out[c] /= total;
  }
}

template <typename T>
void softmax_rows_backward(const T* probabilities, const T* d_probabilities, T* d_logits,
                           std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* p = probabilities + r * cols;
    const T* dp = d_probabilities + r * cols;
    T* dz = d_logits + r * cols;
    T inner = 0;
    for (std::int64_t c = 0; c < cols; ++c) inner += p[c] * dp[c];
    for (std::int64_t c = 0; c < cols; ++c) dz[c] = softmax_logit_gradient(p[c], dp[c], inner);
  }
}

template <typename T>
void gated_combination_forward(const T* experts, const T* gate, const ExpertSelection& selection,
                               std::int64_t batch, std::int64_t dim, T* out) {
  for (std::int64_t b = 0; b < batch; ++b) {
    T* target = out + b * dim;
    for (std::int64_t j = 0; j < dim; ++j) target[j] = T(0);
    for (int i = 0; i < selection.count; ++i) {
      const T weight = gate[b * selection.count + i];
      const T* expert = experts + (selection.index[i] * batch + b) * dim;
      for (std::int64_t j = 0; j < dim; ++j) target[j] = gated_term(target[j], weight, expert[j]);
    }
  }
}

template <typename T>
void gated_combination_backward(const T* experts, const T* gate, const T* d_out,
                                const ExpertSelection& selection, std::int64_t batch,
                                std::int64_t dim, T* d_experts, T* d_gate) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const T* upstream = d_out + b * dim;
    for (int i = 0; i < selection.count; ++i) {
      const std::int64_t offset = (selection.index[i] * batch + b) * dim;
      const T weight = gate[b * selection.count + i];
      T inner = 0;
      for (std::int64_t j = 0; j < dim; ++j) {
        inner = gated_term(inner, experts[offset + j], upstream[j]);
        d_experts[offset + j] = gated_term(d_experts[offset + j], weight, upstream[j]);
      }
      d_gate[b * selection.count + i] = inner;
    }
  }
}

template <typename T>
void gate_combine_forward(const T* logits, const T* experts, const ExpertSelection& selection,
                          std::int64_t batch, std::int64_t dim, T* probabilities, T* out) {
  if (selection.count > 0) softmax_rows_forward(logits, probabilities, batch, selection.count);
  gated_combination_forward(experts, probabilities, selection, batch, dim, out);
}

template <typename T>
void gate_combine_backward(const T* experts, const T* probabilities, const T* d_out,
                           const ExpertSelection& selection, std::int64_t batch, std::int64_t dim,
                           T* d_experts, T* d_logits) {
  // d_p lands in d_logits; the softmax backward may run in place (it reads a row's d_p fully
  // before writing it), so no scratch buffer is needed and the bits equal the two-buffer path.
  gated_combination_backward(experts, probabilities, d_out, selection, batch, dim, d_experts,
                             d_logits);
  softmax_rows_backward(probabilities, d_logits, d_logits, batch,
                        static_cast<std::int64_t>(selection.count));
}

template <typename T>
void gate_combine_backward_stacked(const T* experts, const T* probabilities, const T* d_out_stacked,
                                   const ExpertSelection& selection, std::int64_t tasks,
                                   std::int64_t num_experts_total, std::int64_t batch,
                                   std::int64_t dim, T* d_experts_stacked, T* d_logits_stacked) {
  for (std::int64_t k = 0; k < tasks; ++k) {
    gate_combine_backward(experts, probabilities, d_out_stacked + k * batch * dim, selection, batch,
                          dim, d_experts_stacked + k * num_experts_total * batch * dim,
                          d_logits_stacked + k * batch * selection.count);
  }
}

#define DRGRAD_INSTANTIATE_CPU(T)                                                                 \
  template void softmax_rows_forward<T>(const T*, T*, std::int64_t, std::int64_t);                \
  template void softmax_rows_backward<T>(const T*, const T*, T*, std::int64_t, std::int64_t);     \
  template void gated_combination_forward<T>(const T*, const T*, const ExpertSelection&,          \
                                             std::int64_t, std::int64_t, T*);                     \
  template void gated_combination_backward<T>(                                                    \
      const T*, const T*, const T*, const ExpertSelection&, std::int64_t, std::int64_t, T*, T*);  \
  template void gate_combine_forward<T>(const T*, const T*, const ExpertSelection&, std::int64_t, \
                                        std::int64_t, T*, T*);                                    \
  template void gate_combine_backward<T>(const T*, const T*, const T*, const ExpertSelection&,    \
                                         std::int64_t, std::int64_t, T*, T*);                     \
  template void gate_combine_backward_stacked<T>(                                                 \
      const T*, const T*, const T*, const ExpertSelection&, std::int64_t, std::int64_t,           \
      std::int64_t, std::int64_t, T*, T*);
DRGRAD_INSTANTIATE_CPU(float)
DRGRAD_INSTANTIATE_CPU(double)
#undef DRGRAD_INSTANTIATE_CPU

}  // namespace cpu

template <typename T>
void softmax_rows_forward(const Context& ctx, const T* logits, T* probabilities, std::int64_t rows,
                          std::int64_t cols) {
  DRGRAD_DISPATCH(T, ctx, softmax_rows_forward, logits, probabilities, rows, cols);
}

template <typename T>
void softmax_rows_backward(const Context& ctx, const T* probabilities, const T* d_probabilities,
                           T* d_logits, std::int64_t rows, std::int64_t cols) {
  DRGRAD_DISPATCH(T, ctx, softmax_rows_backward, probabilities, d_probabilities, d_logits, rows,
                  cols);
}

template <typename T>
void gated_combination_forward(const Context& ctx, const T* experts, const T* gate,
                               const ExpertSelection& selection, std::int64_t batch,
                               std::int64_t dim, T* out) {
  DRGRAD_DISPATCH(T, ctx, gated_combination_forward, experts, gate, selection, batch, dim, out);
}

template <typename T>
void gated_combination_backward(const Context& ctx, const T* experts, const T* gate, const T* d_out,
                                const ExpertSelection& selection, std::int64_t batch,
                                std::int64_t dim, T* d_experts, T* d_gate) {
  DRGRAD_DISPATCH(T, ctx, gated_combination_backward, experts, gate, d_out, selection, batch, dim,
                  d_experts, d_gate);
}

template <typename T>
void gate_combine_forward(const Context& ctx, const T* logits, const T* experts,
                          const ExpertSelection& selection, std::int64_t batch, std::int64_t dim,
                          T* probabilities, T* out) {
  DRGRAD_DISPATCH(T, ctx, gate_combine_forward, logits, experts, selection, batch, dim,
                  probabilities, out);
}

template <typename T>
void gate_combine_backward(const Context& ctx, const T* experts, const T* probabilities,
                           const T* d_out, const ExpertSelection& selection, std::int64_t batch,
                           std::int64_t dim, T* d_experts, T* d_logits) {
  DRGRAD_DISPATCH(T, ctx, gate_combine_backward, experts, probabilities, d_out, selection, batch,
                  dim, d_experts, d_logits);
}

template <typename T>
void gate_combine_backward_stacked(const Context& ctx, const T* experts, const T* probabilities,
                                   const T* d_out_stacked, const ExpertSelection& selection,
                                   std::int64_t tasks, std::int64_t num_experts_total,
                                   std::int64_t batch, std::int64_t dim, T* d_experts_stacked,
                                   T* d_logits_stacked) {
  DRGRAD_DISPATCH(T, ctx, gate_combine_backward_stacked, experts, probabilities, d_out_stacked,
                  selection, tasks, num_experts_total, batch, dim, d_experts_stacked,
                  d_logits_stacked);
}

#define DRGRAD_INSTANTIATE(T)                                                                      \
  template void softmax_rows_forward<T>(const Context&, const T*, T*, std::int64_t, std::int64_t); \
  template void softmax_rows_backward<T>(const Context&, const T*, const T*, T*, std::int64_t,     \
                                         std::int64_t);                                            \
  template void gated_combination_forward<T>(                                                      \
      const Context&, const T*, const T*, const ExpertSelection&, std::int64_t, std::int64_t, T*); \
  template void gated_combination_backward<T>(const Context&, const T*, const T*, const T*,        \
                                              const ExpertSelection&, std::int64_t, std::int64_t,  \
                                              T*, T*);                                             \
  template void gate_combine_forward<T>(const Context&, const T*, const T*,                        \
                                        const ExpertSelection&, std::int64_t, std::int64_t, T*,    \
                                        T*);                                                       \
  template void gate_combine_backward<T>(const Context&, const T*, const T*, const T*,             \
                                         const ExpertSelection&, std::int64_t, std::int64_t, T*,   \
                                         T*);                                                      \
  template void gate_combine_backward_stacked<T>(                                                  \
      const Context&, const T*, const T*, const T*, const ExpertSelection&, std::int64_t,          \
      std::int64_t, std::int64_t, std::int64_t, T*, T*);
DRGRAD_INSTANTIATE(float)
DRGRAD_INSTANTIATE(double)
#undef DRGRAD_INSTANTIATE

}  // namespace drgrad::kernels
