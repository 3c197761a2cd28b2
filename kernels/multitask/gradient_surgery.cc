// CPU twin of the gradient-surgery passes (Gram matrix, weighted combination), the dispatch to
// CUDA, and the host-side solvers that turn a Gram matrix into PCGrad and CAGrad weights.
#include "kernels/multitask/gradient_surgery.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels/core/dispatch.h"

namespace drgrad::kernels {

namespace cpu {

template <typename T>
void accumulate_task_gram(const T* gradients, std::int64_t tasks, std::int64_t n, double* gram) {
  // One pass over the columns, every pair i <= j at once: the gradients are read once.
  std::vector<double> upper(static_cast<std::size_t>(tasks * tasks), 0.0);
  for (std::int64_t x = 0; x < n; ++x) {
    for (std::int64_t i = 0; i < tasks; ++i) {
      const double gi = gradients[i * n + x];
      for (std::int64_t j = i; j < tasks; ++j) upper[i * tasks + j] += gi * gradients[j * n + x];
    }
  }
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t j = i; j < tasks; ++j) {
      gram[i * tasks + j] += upper[i * tasks + j];
      if (j != i) gram[j * tasks + i] += upper[i * tasks + j];
    }
  }
}

template <typename T>
void combine_task_gradients(const T* gradients, std::int64_t tasks, std::int64_t n,
                            const double* weights, T* out) {
  for (std::int64_t x = 0; x < n; ++x) {
    double total = 0;
    for (std::int64_t i = 0; i < tasks; ++i) total += weights[i] * gradients[i * n + x];
    out[x] = static_cast<T>(total);
  }
}

template void accumulate_task_gram<float>(const float*, std::int64_t, std::int64_t, double*);
template void accumulate_task_gram<double>(const double*, std::int64_t, std::int64_t, double*);
template void combine_task_gradients<float>(const float*, std::int64_t, std::int64_t, const double*,
                                            float*);
template void combine_task_gradients<double>(const double*, std::int64_t, std::int64_t,
                                             const double*, double*);
}  // namespace cpu

namespace {
void check_task_count(std::int64_t tasks, const char* where) {
  if (tasks < 1 || tasks > kMaxSurgeryTasks) {
    throw std::invalid_argument(std::string(where) + ": gradient surgery takes 1 to " +
                                std::to_string(kMaxSurgeryTasks) + " tasks, got " +
                                std::to_string(tasks));
  }
}

void check_gram(const std::vector<double>& gram, std::int64_t tasks, const char* where) {
  check_task_count(tasks, where);
  if (static_cast<std::int64_t>(gram.size()) != tasks * tasks) {
    throw std::invalid_argument(std::string(where) + ": Gram matrix has " +
                                std::to_string(gram.size()) + " entries, expected " +
                                std::to_string(tasks * tasks));
  }
}

// splitmix64: a small, fully specified generator, so the PCGrad order is the same on every
// platform (std::shuffle's use of the engine is implementation-defined).
std::uint64_t next_random(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Euclidean projection onto the probability simplex (sort-based, exact).
std::vector<double> project_to_simplex(const std::vector<double>& v) {
  std::vector<double> sorted = v;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  double cumulative = 0, threshold = 0;
  for (std::size_t j = 0; j < sorted.size(); ++j) {
    cumulative += sorted[j];
    const double candidate = (cumulative - 1.0) / static_cast<double>(j + 1);
    if (sorted[j] - candidate > 0) threshold = candidate;
  }
  std::vector<double> w(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) w[i] = std::max(v[i] - threshold, 0.0);
  return w;
}

double quadratic_form(const std::vector<double>& gram, std::int64_t tasks,
                      const std::vector<double>& w) {
  double total = 0;
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t j = 0; j < tasks; ++j) total += w[i] * gram[i * tasks + j] * w[j];
  }
  return std::max(total, 0.0);
}

// |g0|^2 = (1/K^2) sum_ij G_ij.
double mean_norm_squared(const std::vector<double>& gram, std::int64_t tasks) {
  const double total = std::accumulate(gram.begin(), gram.end(), 0.0);
  return std::max(total, 0.0) / static_cast<double>(tasks * tasks);
}

// CAGrad objective with s = c |g0| given: F(w) = sum_i w_i (g_i . g0) + s |g_w|.
double objective_with_radius(const std::vector<double>& gram, std::int64_t tasks,
                             const std::vector<double>& w, double radius) {
  double linear = 0;
  for (std::int64_t i = 0; i < tasks; ++i) {
    double gi_dot_g0 = 0;
    for (std::int64_t j = 0; j < tasks; ++j) gi_dot_g0 += gram[i * tasks + j];
    linear += w[i] * gi_dot_g0 / static_cast<double>(tasks);
  }
  return linear + radius * std::sqrt(quadratic_form(gram, tasks, w));
}

// K = 2, w = (t, 1 - t): g_w = g2 + t u with u = g1 - g2, so
// F(t) = const + beta t + s sqrt(q(t)),  q(t) = G22 + 2 gamma t + alpha t^2,
// alpha = |u|^2, gamma = g2 . u, beta = u . g0 = (G11 - G22) / 2. With y = alpha t + gamma,
// q = (y^2 + D) / alpha, D = alpha G22 - gamma^2 >= 0, and F'(t) = 0 reads
// s y / sqrt(q) = -beta, i.e. y^2 (s^2 alpha - beta^2) = beta^2 D with sign(y) = -sign(beta).
// Without a root (s^2 alpha <= beta^2) F is monotone and the minimum is an end point. F is
// convex, so clipping the stationary point to [0, 1] gives the constrained minimum.
double two_task_minimiser(const std::vector<double>& gram, double radius) {
  const double g11 = gram[0], g12 = gram[1], g22 = gram[3];
  const double alpha = g11 - 2 * g12 + g22;
  const double gamma = g12 - g22;
  const double beta = (g11 - g22) / 2;
  if (alpha <= 1e-14 * std::max(g11 + g22, std::numeric_limits<double>::min())) {
    return 0.5;  // g1 == g2: every w gives the same g_w
  }
  const double denominator = radius * radius * alpha - beta * beta;
  if (denominator > 0) {
    const double discriminant = std::max(alpha * g22 - gamma * gamma, 0.0);
    const double magnitude = std::sqrt(beta * beta * discriminant / denominator);
    const double y = beta > 0 ? -magnitude : magnitude;
    return std::clamp((y - gamma) / alpha, 0.0, 1.0);
  }
  if (beta < 0) return 1.0;
  if (beta > 0) return 0.0;
  return 0.5;  // s = 0 and beta = 0: F is constant
}

// Solves matrix x = rhs in place (Gaussian elimination, partial pivoting) for a small symmetric
// positive semi-definite matrix; false when a pivot is below `tolerance` (singular on this face).
bool solve_small_system(std::vector<double> matrix, std::vector<double>& rhs, std::size_t size,
                        double tolerance) {
  for (std::size_t col = 0; col < size; ++col) {
    std::size_t pivot = col;
    for (std::size_t row = col + 1; row < size; ++row) {
      if (std::abs(matrix[row * size + col]) > std::abs(matrix[pivot * size + col])) pivot = row;
    }
    if (std::abs(matrix[pivot * size + col]) <= tolerance) return false;
    for (std::size_t k = 0; k < size; ++k)
      std::swap(matrix[col * size + k], matrix[pivot * size + k]);
    std::swap(rhs[col], rhs[pivot]);
    for (std::size_t row = col + 1; row < size; ++row) {
      const double factor = matrix[row * size + col] / matrix[col * size + col];
      for (std::size_t k = col; k < size; ++k)
        matrix[row * size + k] -= factor * matrix[col * size + k];
      rhs[row] -= factor * rhs[col];
    }
  }
  for (std::size_t col = size; col-- > 0;) {
    for (std::size_t k = col + 1; k < size; ++k) rhs[col] -= matrix[col * size + k] * rhs[k];
    rhs[col] /= matrix[col * size + col];
  }
  return true;
}

// The exact minimiser of F on the face of the simplex spanned by `support`, when F is stationary
// there. With l = G b (l_i = g_i . g0) and r = |g_w|, stationarity on the face reads
// l_S + s G_SS w_S / r = mu 1, so w_S = (r / s)(mu a - e) with a = G_SS^-1 1, e = G_SS^-1 l_S.
// r^2 = w^T G w turns into A mu^2 - 2 E mu + C = s^2 (A = 1.a, E = 1.e, C = l_S.e), and
// sum w = 1 fixes r / s = 1 / (mu A - E) > 0: mu A - E = sqrt(E^2 - A (C - s^2)). Empty when the
// face is singular, the radius is zero, or a weight comes out negative.
std::vector<double> exact_on_face(const std::vector<double>& gram, std::int64_t tasks,
                                  const std::vector<std::int64_t>& support,
                                  const std::vector<double>& linear, double radius) {
  const std::size_t size = support.size();
  if (radius <= 0 || size < 2) return {};
  std::vector<double> face(size * size);
  double largest = 0;
  for (std::size_t i = 0; i < size; ++i) {
    for (std::size_t j = 0; j < size; ++j) {
      face[i * size + j] = gram[support[i] * tasks + support[j]];
    }
    largest = std::max(largest, face[i * size + i]);
  }
  std::vector<double> a(size, 1.0), e(size);
  for (std::size_t i = 0; i < size; ++i) e[i] = linear[support[i]];
  if (!solve_small_system(face, a, size, 1e-12 * largest) ||
      !solve_small_system(face, e, size, 1e-12 * largest)) {
    return {};
  }
  double sum_a = 0, sum_e = 0, linear_e = 0;
  for (std::size_t i = 0; i < size; ++i) {
    sum_a += a[i];
    sum_e += e[i];
    linear_e += linear[support[i]] * e[i];
  }
  const double discriminant = sum_e * sum_e - sum_a * (linear_e - radius * radius);
  if (!(sum_a > 0) || !(discriminant > 0)) return {};
  const double root = std::sqrt(discriminant);
  const double mu = (sum_e + root) / sum_a;
  std::vector<double> w(static_cast<std::size_t>(tasks), 0.0);
  for (std::size_t i = 0; i < size; ++i) {
    const double value = (mu * a[i] - e[i]) / root;
    if (value < -1e-12) return {};
    w[support[i]] = std::max(value, 0.0);
  }
  return w;
}

// K >= 3: projected gradient descent with backtracking on a scale-free copy of the Gram matrix,
// polished by the exact solution on the face it ends on, then the best of that and the simplex's
// vertices.
std::vector<double> many_task_minimiser(const std::vector<double>& gram, std::int64_t tasks,
                                        double c, int max_iterations) {
  double largest = 0;
  for (std::int64_t i = 0; i < tasks; ++i) largest = std::max(largest, gram[i * tasks + i]);
  std::vector<double> w(static_cast<std::size_t>(tasks), 1.0 / static_cast<double>(tasks));
  if (largest <= 0) return w;
  std::vector<double> scaled(gram.size());
  for (std::size_t i = 0; i < gram.size(); ++i) scaled[i] = gram[i] / largest;
  const double radius = c * std::sqrt(mean_norm_squared(scaled, tasks));
  std::vector<double> linear(static_cast<std::size_t>(tasks), 0.0);
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t j = 0; j < tasks; ++j) linear[i] += scaled[i * tasks + j];
    linear[i] /= static_cast<double>(tasks);
  }
  auto value = [&](const std::vector<double>& v) {
    return objective_with_radius(scaled, tasks, v, radius);
  };
  // Gradient: l + s G w / |g_w| (the norm term has no gradient at g_w = 0).
  auto gradient_at = [&](const std::vector<double>& v) {
    std::vector<double> gradient = linear;
    const double norm = std::sqrt(quadratic_form(scaled, tasks, v));
    if (norm > 1e-12) {
      for (std::int64_t i = 0; i < tasks; ++i) {
        double gi_dot_gw = 0;
        for (std::int64_t j = 0; j < tasks; ++j) gi_dot_gw += scaled[i * tasks + j] * v[j];
        gradient[i] += radius * gi_dot_gw / norm;
      }
    }
    return gradient;
  };
  // Optimality on the simplex for the convex F: the partial derivatives are equal on the support
  // and no smaller off it.
  auto optimal = [&](const std::vector<double>& v) {
    if (std::sqrt(quadratic_form(scaled, tasks, v)) <= 1e-12) return false;
    const std::vector<double> gradient = gradient_at(v);
    double support_max = -std::numeric_limits<double>::infinity();
    double overall_min = std::numeric_limits<double>::infinity(), magnitude = 1.0;
    for (std::int64_t i = 0; i < tasks; ++i) {
      if (v[i] > 0) support_max = std::max(support_max, gradient[i]);
      overall_min = std::min(overall_min, gradient[i]);
      magnitude = std::max(magnitude, std::abs(gradient[i]));
    }
    return support_max - overall_min <= 1e-10 * magnitude;
  };
  // Conflicting tasks often put the minimum on a vertex: check those first.
  for (std::int64_t vertex = 0; vertex < tasks; ++vertex) {
    std::vector<double> corner(static_cast<std::size_t>(tasks), 0.0);
    corner[vertex] = 1.0;
    if (optimal(corner)) return corner;
  }
  double step = 1.0;
  double current = value(w);
  for (int iteration = 0; iteration < max_iterations; ++iteration) {
    if (iteration % 10 == 9) {
      // Once the support is right, the exact point on its face ends the search.
      std::vector<std::int64_t> support;
      for (std::int64_t i = 0; i < tasks; ++i) {
        if (w[i] > 1e-9) support.push_back(i);
      }
      const std::vector<double> polished = exact_on_face(scaled, tasks, support, linear, radius);
      if (!polished.empty() && optimal(polished)) return polished;
    }
    const std::vector<double> gradient = gradient_at(w);
    step = std::min(step * 2, 1e6);
    std::vector<double> next;
    double next_value = 0, moved = 0;
    bool accepted = false;
    while (step > 1e-18) {
      std::vector<double> trial(w.size());
      for (std::size_t i = 0; i < w.size(); ++i) trial[i] = w[i] - step * gradient[i];
      next = project_to_simplex(trial);
      double decrease_bound = 0;
      moved = 0;
      for (std::size_t i = 0; i < w.size(); ++i) {
        const double delta = next[i] - w[i];
        decrease_bound += gradient[i] * delta + delta * delta / (2 * step);
        moved = std::max(moved, std::abs(delta));
      }
      next_value = value(next);
      if (next_value <= current + decrease_bound + 1e-16 * std::abs(current)) {
        accepted = true;
        break;
      }
      step /= 2;
    }
    if (!accepted) break;
    w = next;
    current = next_value;
    if (moved < 1e-14) break;
  }
  std::vector<std::int64_t> support;
  for (std::int64_t i = 0; i < tasks; ++i) {
    if (w[i] > 1e-9) support.push_back(i);
  }
  const std::vector<double> polished = exact_on_face(scaled, tasks, support, linear, radius);
  if (!polished.empty()) {
    const double polished_value = value(polished);
    if (polished_value <= current + 1e-14 * (std::abs(current) + 1.0)) {
      current = polished_value;
      w = polished;
    }
  }
  for (std::int64_t vertex = 0; vertex < tasks; ++vertex) {
    std::vector<double> corner(static_cast<std::size_t>(tasks), 0.0);
    corner[vertex] = 1.0;
    const double corner_value = value(corner);
    if (corner_value < current) {
      current = corner_value;
      w = corner;
    }
  }
  return w;
}
}  // namespace

std::vector<double> pcgrad_weights(const std::vector<double>& gram, std::int64_t tasks,
                                   const PcgradOptions& options) {
  check_gram(gram, tasks, "pcgrad");
  // Row i holds the projected g_i as coefficients over the original gradients, so that
  // g_i' . g_j = sum_m coefficients[i][m] G[m][j] needs only the Gram matrix.
  std::vector<double> coefficients(static_cast<std::size_t>(tasks * tasks), 0.0);
  for (std::int64_t i = 0; i < tasks; ++i) coefficients[i * tasks + i] = 1.0;
  std::uint64_t state = options.seed;
  for (std::int64_t i = 0; i < tasks; ++i) {
    std::vector<std::int64_t> order;
    for (std::int64_t j = 0; j < tasks; ++j) {
      if (j != i) order.push_back(j);
    }
    if (options.shuffle) {
      for (std::size_t k = order.size(); k > 1; --k) {
        std::swap(order[k - 1], order[next_random(state) % k]);
      }
    }
    for (const std::int64_t j : order) {
      const double norm_squared = gram[j * tasks + j];
      if (norm_squared <= 0) continue;  // a zero g_j conflicts with nothing
      double dot = 0;
      for (std::int64_t m = 0; m < tasks; ++m)
        dot += coefficients[i * tasks + m] * gram[m * tasks + j];
      if (dot < 0) coefficients[i * tasks + j] -= dot / norm_squared;
    }
  }
  std::vector<double> weights(static_cast<std::size_t>(tasks), 0.0);
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t m = 0; m < tasks; ++m) weights[m] += coefficients[i * tasks + m];
  }
  return weights;
}

double cagrad_objective(const std::vector<double>& gram, std::int64_t tasks,
                        const std::vector<double>& simplex_weights, double c) {
  check_gram(gram, tasks, "cagrad_objective");
  return objective_with_radius(gram, tasks, simplex_weights,
                               c * std::sqrt(mean_norm_squared(gram, tasks)));
}

CagradSolution cagrad_solve(const std::vector<double>& gram, std::int64_t tasks,
                            const CagradOptions& options) {
  check_gram(gram, tasks, "cagrad");
  if (!(options.c >= 0)) {
    throw std::invalid_argument("cagrad: c must be >= 0, got " + std::to_string(options.c));
  }
  const double radius = options.c * std::sqrt(mean_norm_squared(gram, tasks));
  CagradSolution solution;
  if (tasks == 1) {
    solution.simplex_weights = {1.0};
  } else if (tasks == 2) {
    const double t = two_task_minimiser(gram, radius);
    solution.simplex_weights = {t, 1.0 - t};
  } else {
    solution.simplex_weights = many_task_minimiser(gram, tasks, options.c, options.max_iterations);
  }
  solution.objective = objective_with_radius(gram, tasks, solution.simplex_weights, radius);
  double largest = 0;
  for (std::int64_t i = 0; i < tasks; ++i) largest = std::max(largest, gram[i * tasks + i]);
  const double norm_squared = quadratic_form(gram, tasks, solution.simplex_weights);
  // |g_w| below 1e-10 of the largest task gradient's norm counts as zero: no second term.
  const double scale =
      radius > 0 && norm_squared > 1e-20 * largest ? radius / std::sqrt(norm_squared) : 0.0;
  const double rescale = options.rescale ? 1.0 / (1.0 + options.c * options.c) : 1.0;
  solution.weights.resize(static_cast<std::size_t>(tasks));
  for (std::int64_t i = 0; i < tasks; ++i) {
    solution.weights[i] =
        (1.0 / static_cast<double>(tasks) + scale * solution.simplex_weights[i]) * rescale;
  }
  return solution;
}

template <typename T>
void accumulate_task_gram(const Context& ctx, const T* gradients, std::int64_t tasks,
                          std::int64_t n, double* gram) {
  check_task_count(tasks, "accumulate_task_gram");
  DRGRAD_DISPATCH(T, ctx, accumulate_task_gram, gradients, tasks, n, gram);
}

template <typename T>
void combine_task_gradients(const Context& ctx, const T* gradients, std::int64_t tasks,
                            std::int64_t n, const double* weights, T* out) {
  check_task_count(tasks, "combine_task_gradients");
  DRGRAD_DISPATCH(T, ctx, combine_task_gradients, gradients, tasks, n, weights, out);
}

template <typename T>
void pcgrad(const Context& ctx, const T* gradients, std::int64_t tasks, std::int64_t n,
            const PcgradOptions& options, T* out) {
  std::vector<double> gram(static_cast<std::size_t>(tasks * tasks), 0.0);
  accumulate_task_gram<T>(ctx, gradients, tasks, n, gram.data());
  const auto weights = pcgrad_weights(gram, tasks, options);
  combine_task_gradients<T>(ctx, gradients, tasks, n, weights.data(), out);
}

template <typename T>
void cagrad(const Context& ctx, const T* gradients, std::int64_t tasks, std::int64_t n,
            const CagradOptions& options, T* out) {
  std::vector<double> gram(static_cast<std::size_t>(tasks * tasks), 0.0);
  accumulate_task_gram<T>(ctx, gradients, tasks, n, gram.data());
  const auto solution = cagrad_solve(gram, tasks, options);
  combine_task_gradients<T>(ctx, gradients, tasks, n, solution.weights.data(), out);
}

#define DRGRAD_INSTANTIATE(T)                                                                   \
  template void accumulate_task_gram<T>(const Context&, const T*, std::int64_t, std::int64_t,   \
                                        double*);                                               \
  template void combine_task_gradients<T>(const Context&, const T*, std::int64_t, std::int64_t, \
                                          const double*, T*);                                   \
  template void pcgrad<T>(const Context&, const T*, std::int64_t, std::int64_t,                 \
                          const PcgradOptions&, T*);                                            \
  template void cagrad<T>(const Context&, const T*, std::int64_t, std::int64_t,                 \
                          const CagradOptions&, T*);
DRGRAD_INSTANTIATE(float)
DRGRAD_INSTANTIATE(double)
#undef DRGRAD_INSTANTIATE

}  // namespace drgrad::kernels
