// DRGrad's router rule (../shared/DRGRAD.md, Eq. 1-3 with the named variants and the K-task rule)
// and the updater's step (Eq. 7), as host-and-device inline functions on fixed-capacity arrays, so
// that the engine's CPU path, the CPU twin and the CUDA kernel compute the coefficients with the
// very same code. engine/multitask/drgrad_router.h wraps these with vectors.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/optimizer/update_rules.h"  // DRGRAD_HOST_DEVICE

namespace drgrad::kernels {

// The router handles at most this many auxiliary towers (the engine refuses more with a clear
// error); fixed so that coefficient and product arrays live in registers and small structs.
inline constexpr int kRouterMaxAuxiliaryTowers = 16;

// Index of each inner product in the flat product array (double): the primary pair's four, then
// three per auxiliary tower k. Entry sums are only used by the symmetric_heads form.
inline constexpr int kProductOwnNorm2 = 0;      // |g1'|^2
inline constexpr int kProductSharedNorm2 = 1;   // |g1''|^2
inline constexpr int kProductOwnDotShared = 2;  // <g1', g1''>
inline constexpr int kProductOwnSum = 3;        // sum of the entries of g1'
DRGRAD_HOST_DEVICE inline constexpr int product_aux_norm2(int k) {
  return 4 + 3 * k;
}
DRGRAD_HOST_DEVICE inline constexpr int product_own_dot_aux(int k) {
  return 5 + 3 * k;
}
DRGRAD_HOST_DEVICE inline constexpr int product_aux_sum(int k) {
  return 6 + 3 * k;
}
DRGRAD_HOST_DEVICE inline constexpr int router_product_count(int num_aux) {
  return 4 + 3 * num_aux;
}
inline constexpr int kRouterMaxProducts = 4 + 3 * kRouterMaxAuxiliaryTowers;

enum class RouterRuleForm : int { kPaper = 0, kPaired = 1, kSymmetricHeads = 2 };

struct RouterRule {
  RouterRuleForm form = RouterRuleForm::kPaper;
  double gamma = 1.0;
  int num_aux = 1;  // 1 .. kRouterMaxAuxiliaryTowers
};

// The coefficients of one step (see engine/multitask/drgrad_router.h for their meaning) and the
// per-pair diagnostics, for the primary pair against each auxiliary tower k < num_aux.
struct RouterCoefficientValues {
  int num_aux = 0;
  double own_from_shared = 0;
  double shared_from_shared = 0;
  double own_from_aux[kRouterMaxAuxiliaryTowers] = {};
  double aux_from_own[kRouterMaxAuxiliaryTowers] = {};
  double xi1[kRouterMaxAuxiliaryTowers] = {};
  double lambda1[kRouterMaxAuxiliaryTowers] = {};
  int sign_case[kRouterMaxAuxiliaryTowers] = {};
  double xi2 = 0;
  double lambda2 = 0;
};

// The sign case of (xi1, xi2), numbered as the rows of the table in DRGRAD.md:
// 0: xi1 >= 0, xi2 >= 0;  1: xi1 >= 0, xi2 < 0;  2: xi1 < 0, xi2 >= 0;  3: xi1 < 0, xi2 < 0.
DRGRAD_HOST_DEVICE inline int router_sign_case(double xi1, double xi2) {
  return (xi1 < 0 ? 2 : 0) + (xi2 < 0 ? 1 : 0);
}

// clamp and min written out as the standard library defines them (same result for NaN), since
// std::clamp and std::min are not device functions.
DRGRAD_HOST_DEVICE inline double router_clamp(double value, double low, double high) {
  return value < low ? low : (high < value ? high : value);
}

// cos = dot / (|a| |b|), clamped to [-1, 1]; zero when a norm is zero.
DRGRAD_HOST_DEVICE inline double router_cosine(double dot, double norm2_a, double norm2_b) {
  const double denominator = sqrt(norm2_a) * sqrt(norm2_b);
  return denominator > 0 ? router_clamp(dot / denominator, -1.0, 1.0) : 0.0;
}

// clip(|a| / |b|, 0, 1) ^ gamma, zero when either norm is zero.
DRGRAD_HOST_DEVICE inline double router_stake(double norm2_a, double norm2_b, double gamma) {
  if (norm2_a <= 0 || norm2_b <= 0) return 0.0;
  const double ratio = sqrt(norm2_a / norm2_b);
  return pow(ratio < 1.0 ? ratio : 1.0, gamma);
}

// Eq. 1-3 from the flat product array (router_product_count(rule.num_aux) entries). Terms that
// carry an auxiliary gradient are summed over k, terms that carry g1'' averaged over k. Every
// division is guarded: a zero norm gives a zero cosine and a zero ratio, never NaN. The caller
// checks rule.num_aux (1 .. kRouterMaxAuxiliaryTowers) and rule.gamma (> 0).
DRGRAD_HOST_DEVICE inline void compute_router_coefficient_values(const double* products,
                                                                 const RouterRule& rule,
                                                                 RouterCoefficientValues* out) {
  RouterCoefficientValues c;
  c.num_aux = rule.num_aux;
  const double own_norm2 = products[kProductOwnNorm2];
  const double shared_norm2 = products[kProductSharedNorm2];
  const double xi2 = router_cosine(products[kProductOwnDotShared], own_norm2, shared_norm2);
  const double lambda2 = router_stake(own_norm2, shared_norm2, rule.gamma);
  c.xi2 = xi2;
  c.lambda2 = lambda2;
  const double k_count = static_cast<double>(rule.num_aux);
  for (int a = 0; a < rule.num_aux; ++a) {
    const double aux_norm2 = products[product_aux_norm2(a)];
    const double xi1 = router_cosine(products[product_own_dot_aux(a)], own_norm2, aux_norm2);
    const double lambda1 = router_stake(own_norm2, aux_norm2, rule.gamma);
    c.xi1[a] = xi1;
    c.lambda1[a] = lambda1;
    c.sign_case[a] = router_sign_case(xi1, xi2);
    const double boost = 1.0 - (xi1 < 0 ? 1.0 : 0.0) * xi1;  // (1 - [xi1 < 0] xi1)
    const double shared_term = -(xi1 * xi2 < 0 ? 1.0 : 0.0) * xi1 * xi2;
    switch (rule.form) {
      case RouterRuleForm::kPaper:
        c.own_from_shared += boost * lambda1 / k_count;
        c.own_from_aux[a] = (xi2 >= 0 ? 1.0 : 0.0) * lambda2;
        c.shared_from_shared += shared_term / k_count;
        break;
      case RouterRuleForm::kPaired:
        c.own_from_aux[a] = boost * lambda1;
        c.own_from_shared += (xi2 >= 0 ? 1.0 : 0.0) * lambda2 / k_count;
        c.shared_from_shared += shared_term / k_count;
        break;
      case RouterRuleForm::kSymmetricHeads: {
        // g_a += w_ab (1 - [c <= 0] c) g_b, w_ab = clip(sum(g_a/|g_a|) / sum(g_b/|g_b|), 0.1, 5)
        const double heads = 1.0 - (xi1 <= 0 ? 1.0 : 0.0) * xi1;
        const double own_sum = products[kProductOwnSum];
        const double aux_sum = products[product_aux_sum(a)];
        const double own_mean = own_norm2 > 0 ? own_sum / sqrt(own_norm2) : 0.0;
        const double aux_mean = aux_norm2 > 0 ? aux_sum / sqrt(aux_norm2) : 0.0;
        const double own_ratio = aux_mean != 0 ? own_mean / aux_mean : 0.0;
        const double aux_ratio = own_mean != 0 ? aux_mean / own_mean : 0.0;
        c.own_from_aux[a] = router_clamp(own_ratio, 0.1, 5.0) * heads;
        c.aux_from_own[a] = router_clamp(aux_ratio, 0.1, 5.0) * heads;
        break;
      }
    }
  }
  *out = c;
}

// The routed gradients of one element (DRGRAD.md Eq. 2-3 applied), from the unmodified gradients
// g_own (g1'), g_shared (g1'') and g_aux[k], k < num_aux <= Capacity. Each term is added only when
// its coefficient is non-zero, in this order and in T, exactly as the in-place axpy sequence
//   g1' += c.own_from_shared g1'';  g1' += c.own_from_aux[k] g_k (k = 0, 1, ...);
//   g1'' += c.shared_from_shared g1'';  g_k += c.aux_from_own[k] g1' (the g1' before its update)
// would compute it. Capacity lets a kernel keep the arrays in registers.
template <typename T, int Capacity>
DRGRAD_HOST_DEVICE inline void route_gradient_element(const RouterCoefficientValues& c, int num_aux,
                                                      T g_own, T g_shared, const T* g_aux,
                                                      T* final_own, T* final_shared, T* final_aux) {
  T own = g_own;
  if (c.own_from_shared != 0) own += T(c.own_from_shared) * g_shared;
  for (int k = 0; k < Capacity; ++k) {
    if (k >= num_aux) break;
    if (c.own_from_aux[k] != 0) own += T(c.own_from_aux[k]) * g_aux[k];
  }
  T shared = g_shared;
  if (c.shared_from_shared != 0) shared += T(c.shared_from_shared) * g_shared;
  for (int k = 0; k < Capacity; ++k) {
    if (k >= num_aux) break;
    T aux = g_aux[k];
    if (c.aux_from_own[k] != 0) aux += T(c.aux_from_own[k]) * g_own;
    final_aux[k] = aux;
  }
  *final_own = own;
  *final_shared = shared;
}

// The updater (Eq. 7) with decay rho: sigma <- rho sigma + |final tower gradient|.
DRGRAD_HOST_DEVICE inline void mixing_accumulate(double rho, double own_gradient_norm,
                                                 double shared_gradient_norm, double* sigma_own,
                                                 double* sigma_shared) {
  *sigma_own = rho * *sigma_own + own_gradient_norm;
  *sigma_shared = rho * *sigma_shared + shared_gradient_norm;
}

// (mu', mu'') = softmax(sigma', sigma''), shifted by the larger sum so that it never overflows.
DRGRAD_HOST_DEVICE inline void mixing_softmax(double sigma_own, double sigma_shared, double* mu_own,
                                              double* mu_shared) {
  const double peak = sigma_own < sigma_shared ? sigma_shared : sigma_own;
  const double own = exp(sigma_own - peak);
  const double shared = exp(sigma_shared - peak);
  *mu_own = own / (own + shared);
  *mu_shared = shared / (own + shared);
}

}  // namespace drgrad::kernels
