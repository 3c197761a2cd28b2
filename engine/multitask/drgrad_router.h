// DRGrad's router and updater (../shared/DRGRAD.md, Eq. 1-5 and 7), as pure arithmetic on the
// tower gradients' inner products, so that the rule is testable on small hand-computed vectors
// and the same coefficients drive the CPU and GPU application passes.
//
// Towers: T1' (the primary task on its own view, gradient g1'), T1'' (the primary task on v_s,
// g1''), and one tower per auxiliary task k (g_k). Routed gradients are linear combinations:
//   gR1'  = own_from_shared * g1'' + sum_k own_from_aux[k] * g_k
//   gR1'' = shared_from_shared * g1''
//   gR_k  = aux_from_own[k] * g1'          (symmetric_heads only; zero otherwise)
// all computed from the unmodified gradients of one step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/multitask/drgrad_router_rule.h"

namespace drgrad::engine {

// Which reading of Eq. 2 (see DRGRAD.md, "Known ambiguities").
enum class RouterForm {
  kPaper,           // as printed: lambda1 (from g2) scales g1'', lambda2 (from g1'') scales g2
  kPaired,          // each stake scales the gradient it was measured on
  kSymmetricHeads,  // the first author's code: T1' and each auxiliary head exchange gradient
};
RouterForm parse_router_form(const std::string& name);
const char* router_form_name(RouterForm form);

// Which tower parameters are routed: all of them, or the first layer only (as in that code).
enum class RoutedParameters { kAll, kFirstLayer };
RoutedParameters parse_routed_parameters(const std::string& name);
const char* routed_parameters_name(RoutedParameters scope);

struct RouterSettings {
  RouterForm form = RouterForm::kPaper;
  RoutedParameters scope = RoutedParameters::kAll;
  double gamma = 1.0;  // lambda = clip(ratio, 0, 1) ^ gamma
};

// Inner products of the routed gradients (over the routed parameters only).
struct TowerGradientProducts {
  double own_norm2 = 0;             // |g1'|^2
  double shared_norm2 = 0;          // |g1''|^2
  double own_dot_shared = 0;        // <g1', g1''>
  std::vector<double> aux_norm2;    // |g_k|^2
  std::vector<double> own_dot_aux;  // <g1', g_k>
  double own_sum = 0;               // sum of the entries of g1' (symmetric_heads)
  std::vector<double> aux_sum;      // sum of the entries of g_k (symmetric_heads)
};

// The sign case of (xi1, xi2), numbered as the rows of the table in DRGRAD.md:
// 0: xi1 >= 0, xi2 >= 0;  1: xi1 >= 0, xi2 < 0;  2: xi1 < 0, xi2 >= 0;  3: xi1 < 0, xi2 < 0.
int sign_case(double xi1, double xi2);

struct RouterPair {    // the primary pair against auxiliary tower k
  double xi1 = 0;      // cos(g1', g_k)   (symmetric_heads: the heads' cosine)
  double xi2 = 0;      // cos(g1', g1'')
  double lambda1 = 0;  // clip(|g1'| / |g_k|, 0, 1) ^ gamma
  double lambda2 = 0;  // clip(|g1'| / |g1''|, 0, 1) ^ gamma
  int sign_case = 0;
};

struct RouterCoefficients {
  double own_from_shared = 0;
  std::vector<double> own_from_aux;
  double shared_from_shared = 0;
  std::vector<double> aux_from_own;
  std::vector<RouterPair> pairs;
};

// The kernels' form of the settings for num_aux auxiliary towers. Throws std::invalid_argument for
// no auxiliary tower or gamma <= 0, and kernels::NotSupportedError for more than
// kernels::kRouterMaxAuxiliaryTowers.
kernels::RouterRule router_rule(const RouterSettings& settings, std::size_t num_aux);
// The engine's view of the coefficients the kernels computed.
RouterCoefficients to_router_coefficients(const kernels::RouterCoefficientValues& values);

// Eq. 1-3 (and the named variants; more than two tasks by the rule in DRGRAD.md: terms carrying
// an auxiliary gradient are summed over k, terms carrying g1'' averaged over k). Every division
// is guarded: a zero norm gives a zero cosine and a zero ratio, never NaN. The arithmetic is
// kernels::compute_router_coefficient_values, the code the fused device passes run.
RouterCoefficients compute_router_coefficients(const TowerGradientProducts& products,
                                               const RouterSettings& settings);

// The updater (Eq. 7) with decay rho: sigma <- rho * sigma + |final tower gradient|, and
// (mu', mu'') = softmax(sigma', sigma'').
struct MixingUpdater {
  double rho = 1.0;
  double sigma_own = 0, sigma_shared = 0;
  // Returns the new (mu', mu'').
  std::pair<double, double> update(double own_gradient_norm, double shared_gradient_norm);
  std::pair<double, double> mixing() const;
};

}  // namespace drgrad::engine
