// The router's coefficients and the updater's softmax: the engine's view (vectors) of the shared
// arithmetic in kernels/multitask/drgrad_router_rule.h.
#include "engine/multitask/drgrad_router.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/core/device.h"
#include "kernels/multitask/drgrad_router_rule.h"

namespace drgrad::engine {

RouterForm parse_router_form(const std::string& name) {
  if (name == "paper") return RouterForm::kPaper;
  if (name == "paired") return RouterForm::kPaired;
  if (name == "symmetric_heads") return RouterForm::kSymmetricHeads;
  throw std::invalid_argument("unknown router form '" + name +
                              "': use paper, paired or symmetric_heads");
}

const char* router_form_name(RouterForm form) {
  switch (form) {
    case RouterForm::kPaper:
      return "paper";
    case RouterForm::kPaired:
      return "paired";
    case RouterForm::kSymmetricHeads:
      return "symmetric_heads";
  }
  return "?";
}

RoutedParameters parse_routed_parameters(const std::string& name) {
  if (name == "all") return RoutedParameters::kAll;
  if (name == "first_layer") return RoutedParameters::kFirstLayer;
  throw std::invalid_argument("unknown routed parameter set '" + name +
                              "': use all or first_layer");
}

const char* routed_parameters_name(RoutedParameters scope) {
  return scope == RoutedParameters::kAll ? "all" : "first_layer";
}

int sign_case(double xi1, double xi2) {
  return kernels::router_sign_case(xi1, xi2);
}

kernels::RouterRule router_rule(const RouterSettings& settings, std::size_t num_aux) {
  if (num_aux == 0) throw std::invalid_argument("the router needs at least one auxiliary tower");
  if (num_aux > static_cast<std::size_t>(kernels::kRouterMaxAuxiliaryTowers)) {
    throw kernels::NotSupportedError("DRGrad's router handles at most " +
                                     std::to_string(kernels::kRouterMaxAuxiliaryTowers) +
                                     " auxiliary tasks, the model has " + std::to_string(num_aux) +
                                     "; drop auxiliary tasks or use another strategy");
  }
  if (!(settings.gamma > 0)) throw std::invalid_argument("router gamma must be positive");
  kernels::RouterRule rule;
  switch (settings.form) {
    case RouterForm::kPaper:
      rule.form = kernels::RouterRuleForm::kPaper;
      break;
    case RouterForm::kPaired:
      rule.form = kernels::RouterRuleForm::kPaired;
      break;
    case RouterForm::kSymmetricHeads:
      rule.form = kernels::RouterRuleForm::kSymmetricHeads;
      break;
  }
  rule.gamma = settings.gamma;
  rule.num_aux = static_cast<int>(num_aux);
  return rule;
}

RouterCoefficients to_router_coefficients(const kernels::RouterCoefficientValues& values) {
  RouterCoefficients c;
  c.own_from_shared = values.own_from_shared;
  c.shared_from_shared = values.shared_from_shared;
  for (int k = 0; k < values.num_aux; ++k) {
    c.own_from_aux.push_back(values.own_from_aux[k]);
    c.aux_from_own.push_back(values.aux_from_own[k]);
    RouterPair pair;
    pair.xi1 = values.xi1[k];
    pair.xi2 = values.xi2;
    pair.lambda1 = values.lambda1[k];
    pair.lambda2 = values.lambda2;
    pair.sign_case = values.sign_case[k];
    c.pairs.push_back(pair);
  }
  return c;
}

RouterCoefficients compute_router_coefficients(const TowerGradientProducts& p,
                                               const RouterSettings& settings) {
  const std::size_t num_aux = p.aux_norm2.size();
  if (num_aux == 0 || p.own_dot_aux.size() != num_aux) {
    throw std::invalid_argument("the router needs at least one auxiliary tower");
  }
  const kernels::RouterRule rule = router_rule(settings, num_aux);
  double products[kernels::kRouterMaxProducts] = {};
  products[kernels::kProductOwnNorm2] = p.own_norm2;
  products[kernels::kProductSharedNorm2] = p.shared_norm2;
  products[kernels::kProductOwnDotShared] = p.own_dot_shared;
  products[kernels::kProductOwnSum] = p.own_sum;
  for (std::size_t a = 0; a < num_aux; ++a) {
    const int k = static_cast<int>(a);
    products[kernels::product_aux_norm2(k)] = p.aux_norm2[a];
    products[kernels::product_own_dot_aux(k)] = p.own_dot_aux[a];
    // The entry sums only matter to symmetric_heads; other callers may leave them out.
    products[kernels::product_aux_sum(k)] = a < p.aux_sum.size() ? p.aux_sum[a] : 0.0;
  }
  kernels::RouterCoefficientValues values;
  kernels::compute_router_coefficient_values(products, rule, &values);
  return to_router_coefficients(values);
}

std::pair<double, double> MixingUpdater::update(double own_gradient_norm,
                                                double shared_gradient_norm) {
  kernels::mixing_accumulate(rho, own_gradient_norm, shared_gradient_norm, &sigma_own,
                             &sigma_shared);
  return mixing();
}

std::pair<double, double> MixingUpdater::mixing() const {
  std::pair<double, double> mu;
  kernels::mixing_softmax(sigma_own, sigma_shared, &mu.first, &mu.second);
  return mu;
}

}  // namespace drgrad::engine
