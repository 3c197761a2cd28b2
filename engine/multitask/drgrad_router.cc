// The router's coefficients and the updater's softmax.
#include "engine/multitask/drgrad_router.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

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
  return (xi1 < 0 ? 2 : 0) + (xi2 < 0 ? 1 : 0);
}

namespace {
double cosine(double dot, double norm2_a, double norm2_b) {
  const double denominator = std::sqrt(norm2_a) * std::sqrt(norm2_b);
  return denominator > 0 ? std::clamp(dot / denominator, -1.0, 1.0) : 0.0;
}
// clip(|a| / |b|, 0, 1) ^ gamma, zero when either norm is zero.
double stake(double norm2_a, double norm2_b, double gamma) {
  if (norm2_a <= 0 || norm2_b <= 0) return 0.0;
  return std::pow(std::min(1.0, std::sqrt(norm2_a / norm2_b)), gamma);
}
double indicator(bool condition) {
  return condition ? 1.0 : 0.0;
}
}  // namespace

RouterCoefficients compute_router_coefficients(const TowerGradientProducts& p,
                                               const RouterSettings& settings) {
  const std::size_t num_aux = p.aux_norm2.size();
  if (num_aux == 0 || p.own_dot_aux.size() != num_aux) {
    throw std::invalid_argument("the router needs at least one auxiliary tower");
  }
  if (!(settings.gamma > 0)) throw std::invalid_argument("router gamma must be positive");
  RouterCoefficients c;
  c.own_from_aux.assign(num_aux, 0.0);
  c.aux_from_own.assign(num_aux, 0.0);
  const double xi2 = cosine(p.own_dot_shared, p.own_norm2, p.shared_norm2);
  const double lambda2 = stake(p.own_norm2, p.shared_norm2, settings.gamma);
  const double k = static_cast<double>(num_aux);
  for (std::size_t a = 0; a < num_aux; ++a) {
    RouterPair pair;
    pair.xi1 = cosine(p.own_dot_aux[a], p.own_norm2, p.aux_norm2[a]);
    pair.xi2 = xi2;
    pair.lambda1 = stake(p.own_norm2, p.aux_norm2[a], settings.gamma);
    pair.lambda2 = lambda2;
    pair.sign_case = sign_case(pair.xi1, pair.xi2);
    const double boost = 1.0 - indicator(pair.xi1 < 0) * pair.xi1;  // (1 - [xi1 < 0] xi1)
    const double shared_term = -indicator(pair.xi1 * xi2 < 0) * pair.xi1 * xi2;
    switch (settings.form) {
      case RouterForm::kPaper:
        c.own_from_shared += boost * pair.lambda1 / k;
        c.own_from_aux[a] = indicator(xi2 >= 0) * lambda2;
        c.shared_from_shared += shared_term / k;
        break;
      case RouterForm::kPaired:
        c.own_from_aux[a] = boost * pair.lambda1;
        c.own_from_shared += indicator(xi2 >= 0) * lambda2 / k;
        c.shared_from_shared += shared_term / k;
        break;
      case RouterForm::kSymmetricHeads: {
        // g_a += w_ab (1 - [c <= 0] c) g_b with w_ab = clip(sum(g_a/|g_a|) / sum(g_b/|g_b|), 0.1,
        // 5)
        const double heads = 1.0 - indicator(pair.xi1 <= 0) * pair.xi1;
        const double own_mean = p.own_norm2 > 0 ? p.own_sum / std::sqrt(p.own_norm2) : 0.0;
        const double aux_mean = p.aux_norm2[a] > 0 ? p.aux_sum[a] / std::sqrt(p.aux_norm2[a]) : 0.0;
        const double own_ratio = aux_mean != 0 ? own_mean / aux_mean : 0.0;
        const double aux_ratio = own_mean != 0 ? aux_mean / own_mean : 0.0;
        c.own_from_aux[a] = std::clamp(own_ratio, 0.1, 5.0) * heads;
        c.aux_from_own[a] = std::clamp(aux_ratio, 0.1, 5.0) * heads;
        break;
      }
    }
    c.pairs.push_back(pair);
  }
  return c;
}

std::pair<double, double> MixingUpdater::update(double own_gradient_norm,
                                                double shared_gradient_norm) {
  sigma_own = rho * sigma_own + own_gradient_norm;
  sigma_shared = rho * sigma_shared + shared_gradient_norm;
  return mixing();
}

std::pair<double, double> MixingUpdater::mixing() const {
  const double peak = std::max(sigma_own, sigma_shared);
  const double own = std::exp(sigma_own - peak);
  const double shared = std::exp(sigma_shared - peak);
  return {own / (own + shared), shared / (own + shared)};
}

}  // namespace drgrad::engine
