// Gradient surgery on per-task gradients of shared parameters: PCGrad (Yu et al., NeurIPS 2020)
// and CAGrad (Liu et al., NeurIPS 2021). Both return a linear combination of the task gradients
// whose weights depend only on their K x K Gram matrix, so the work on the (large) gradients is
// two passes over a [tasks, n] matrix: the Gram matrix, then the weighted sum. The weights are
// solved on the host from the Gram matrix (K is small).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// gram[i * tasks + j] += sum_x gradients[i * n + x] * gradients[j * n + x] for all i, j.
// gradients: [tasks, n] on ctx's device; gram: host, tasks * tasks doubles, accumulated so that
// the Gram matrices of several parameters add up to that of their concatenation. Sums in double,
// in a fixed order. Blocks until the result is on the host.
template <typename T>
void accumulate_task_gram(const Context& ctx, const T* gradients, std::int64_t tasks,
                          std::int64_t n, double* gram);

// out[x] = sum_i weights[i] * gradients[i * n + x] (overwrites out). weights: host, tasks entries;
// at most kMaxSurgeryTasks tasks.
template <typename T>
void combine_task_gradients(const Context& ctx, const T* gradients, std::int64_t tasks,
                            std::int64_t n, const double* weights, T* out);

inline constexpr std::int64_t kMaxSurgeryTasks = 64;

// PCGrad. For each task i, for each other task j in an order drawn per i, with the ORIGINAL g_j
// and the running (already projected) g_i:  if g_i . g_j < 0:  g_i -= (g_i . g_j) / |g_j|^2 g_j.
// A zero g_j is skipped. The combined gradient is the SUM of the projected g_i (as in the paper;
// divide the weights by K for the mean).
struct PcgradOptions {
  bool shuffle = true;     // a random order per task i (the paper); false: increasing j
  std::uint64_t seed = 0;  // the order's seed; the same seed and Gram matrix give the same weights
};
// Combination weights w (combined = sum_m w[m] g_m) from the row-major Gram matrix.
std::vector<double> pcgrad_weights(const std::vector<double>& gram, std::int64_t tasks,
                                   const PcgradOptions& options = {});

// CAGrad. With g0 = (1/K) sum_i g_i (the mean) and s = c |g0|:
//   w* = argmin over the simplex of F(w) = g_w . g0 + s |g_w|,   g_w = sum_i w_i g_i,
//   d  = g0 + (s / |g_w*|) g_w*,  and d / (1 + c^2) when rescale is set (the authors' default).
// K = 1 and K = 2 are solved exactly (closed form); K >= 3 by the vertices' optimality check,
// then projected gradient descent with backtracking on the simplex, ended by the exact
// stationary point on the face of its support once that point passes the optimality check. Guards:
// |g0| = 0 gives s = 0 and d = g0; |g_w*| = 0 (below 1e-10 of the largest task gradient's norm)
// drops the second term (d = g0 before rescaling).
struct CagradOptions {
  double c = 0.4;       // the conflict radius, c >= 0
  bool rescale = true;  // divide by 1 + c^2
  int max_iterations = 20000;
};
struct CagradSolution {
  std::vector<double> simplex_weights;  // w*
  std::vector<double> weights;          // d = sum_m weights[m] g_m
  double objective = 0;                 // F(w*)
};
CagradSolution cagrad_solve(const std::vector<double>& gram, std::int64_t tasks,
                            const CagradOptions& options = {});
// F(w) of CAGrad for a given w (for tests and diagnostics).
double cagrad_objective(const std::vector<double>& gram, std::int64_t tasks,
                        const std::vector<double>& simplex_weights, double c);

// One [tasks, n] block end to end (Gram pass, weights, combination pass) into out [n].
template <typename T>
void pcgrad(const Context& ctx, const T* gradients, std::int64_t tasks, std::int64_t n,
            const PcgradOptions& options, T* out);
template <typename T>
void cagrad(const Context& ctx, const T* gradients, std::int64_t tasks, std::int64_t n,
            const CagradOptions& options, T* out);

namespace cpu {
template <typename T>
void accumulate_task_gram(const T* gradients, std::int64_t tasks, std::int64_t n, double* gram);
template <typename T>
void combine_task_gradients(const T* gradients, std::int64_t tasks, std::int64_t n,
                            const double* weights, T* out);
}  // namespace cpu

namespace cuda {
void accumulate_task_gram(const Context& ctx, const float* gradients, std::int64_t tasks,
                          std::int64_t n, double* gram);
void combine_task_gradients(const Context& ctx, const float* gradients, std::int64_t tasks,
                            std::int64_t n, const double* weights, float* out);
}  // namespace cuda

}  // namespace drgrad::kernels
