// DrgradStrategy: inner products over the routed tower parameters, the router's coefficients,
// their application with axpy on the device, the updater, and telemetry.
#include "engine/multitask/drgrad_strategy.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

namespace {
std::vector<Parameter*> routed(const std::vector<Parameter*>& tower, RoutedParameters scope) {
  if (scope == RoutedParameters::kAll) return tower;
  std::vector<Parameter*> first;
  for (Parameter* parameter : tower) {
    if (parameter->name.find("/layer0/") != std::string::npos) first.push_back(parameter);
  }
  return first;
}

double squared_norm(const kernels::Context& ctx, const std::vector<Parameter*>& tower) {
  double total = 0;
  for (const Parameter* p : tower) {
    total += kernels::dot<float>(ctx, p->gradient.numel(), p->gradient.data<float>(),
                                 p->gradient.data<float>());
  }
  return total;
}

double inner(const kernels::Context& ctx, const std::vector<Parameter*>& a,
             const std::vector<Parameter*>& b) {
  double total = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    total += kernels::dot<float>(ctx, a[i]->gradient.numel(), a[i]->gradient.data<float>(),
                                 b[i]->gradient.data<float>());
  }
  return total;
}

// Sum of the entries of a tower's gradient, as a dot product with `ones` (at least as long as
// the tower's largest parameter; kept by the strategy so that no step allocates it).
double entry_sum(const kernels::Context& ctx, const std::vector<Parameter*>& tower,
                 const Tensor& ones) {
  double total = 0;
  for (const Parameter* p : tower) {
    total += kernels::dot<float>(ctx, p->gradient.numel(), p->gradient.data<float>(),
                                 ones.data<float>());
  }
  return total;
}

std::string json_list(const std::vector<double>& values) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    out << (i ? ", " : "") << std::setprecision(7) << values[i];
  }
  return out.str() + "]";
}
}  // namespace

DrgradStrategy::DrgradStrategy(const DrgradSettings& settings, const MultiTaskModel<float>& model)
    : settings_(settings) {
  updater_.rho = settings.rho;
  const ModelSpec& spec = model.spec();
  if (!spec.split.enabled) {
    throw std::invalid_argument(
        "the DRGrad strategy routes between split towers: set model.split_towers = true");
  }
  const ParameterStore& store = model.parameters();
  const auto reference = store.group(model.primary_own_group());
  auto check_same_shape = [&](const std::string& group) {
    const auto tower = store.group(group);
    bool same = tower.size() == reference.size();
    for (std::size_t i = 0; same && i < tower.size(); ++i) {
      same = tower[i]->value.shape() == reference[i]->value.shape();
    }
    if (!same) {
      throw std::invalid_argument(
          "DRGrad adds one tower's gradient to another's, so towers must "
          "have the same shape, but '" +
          group + "' differs from '" + model.primary_own_group() + "'");
    }
  };
  check_same_shape(model.primary_shared_group());
  for (int k = 0; k < static_cast<int>(spec.tasks.size()); ++k) {
    if (k == spec.split.primary_task) continue;
    aux_groups_.push_back(model.tower_group(k));
    check_same_shape(aux_groups_.back());
  }
  if (settings.router.form == RouterForm::kSymmetricHeads) {
    std::int64_t largest = 1;
    for (const Parameter* p : reference) largest = std::max(largest, p->value.numel());
    ones_ = Tensor::from_vector<float>({largest},
                                       std::vector<float>(static_cast<std::size_t>(largest), 1.f))
                .to(reference.front()->value.device());
  }
  if (!settings.telemetry_path.empty() && settings.telemetry_every > 0) {
    const auto folder = std::filesystem::path(settings.telemetry_path).parent_path();
    if (!folder.empty()) std::filesystem::create_directories(folder);
    telemetry_.open(settings.telemetry_path, std::ios::app);
  }
}

void DrgradStrategy::after_backward(MultiTaskModel<float>& model, std::int64_t step) {
  const kernels::Context& ctx = model.context();
  const ParameterStore& store = model.parameters();
  const auto own_tower = store.group(model.primary_own_group());
  const auto shared_tower = store.group(model.primary_shared_group());
  const auto scope = settings_.router.scope;
  const auto own = routed(own_tower, scope);
  const auto shared = routed(shared_tower, scope);
  std::vector<std::vector<Parameter*>> aux;
  for (const auto& group : aux_groups_) aux.push_back(routed(store.group(group), scope));

  TowerGradientProducts products;
  products.own_norm2 = squared_norm(ctx, own);
  products.shared_norm2 = squared_norm(ctx, shared);
  products.own_dot_shared = inner(ctx, own, shared);
  const bool symmetric = settings_.router.form == RouterForm::kSymmetricHeads;
  if (symmetric) products.own_sum = entry_sum(ctx, own, ones_);
  for (const auto& tower : aux) {
    products.aux_norm2.push_back(squared_norm(ctx, tower));
    products.own_dot_aux.push_back(inner(ctx, own, tower));
    if (symmetric) products.aux_sum.push_back(entry_sum(ctx, tower, ones_));
  }
  last_ = compute_router_coefficients(products, settings_.router);

  // Apply, from the unmodified gradients: the auxiliary heads (symmetric form) read g1' as it was
  // before its own update, so keep a copy of it first.
  std::vector<Tensor> original_own;
  if (symmetric) {
    for (const Parameter* p : own) original_own.push_back(p->gradient.clone());
  }
  for (std::size_t i = 0; i < own.size(); ++i) {
    float* g_own = own[i]->gradient.data<float>();
    const std::int64_t n = own[i]->gradient.numel();
    if (last_.own_from_shared != 0) {
      kernels::axpy<float>(ctx, n, static_cast<float>(last_.own_from_shared),
                           shared[i]->gradient.data<float>(), g_own);
    }
    for (std::size_t a = 0; a < aux.size(); ++a) {
      if (last_.own_from_aux[a] != 0) {
        kernels::axpy<float>(ctx, n, static_cast<float>(last_.own_from_aux[a]),
                             aux[a][i]->gradient.data<float>(), g_own);
      }
    }
    if (last_.shared_from_shared != 0) {
      float* g_shared = shared[i]->gradient.data<float>();
      kernels::axpy<float>(ctx, n, static_cast<float>(last_.shared_from_shared), g_shared,
                           g_shared);
    }
    if (symmetric) {
      for (std::size_t a = 0; a < aux.size(); ++a) {
        kernels::axpy<float>(ctx, n, static_cast<float>(last_.aux_from_own[a]),
                             original_own[i].data<float>(), aux[a][i]->gradient.data<float>());
      }
    }
  }
  for (const auto& pair : last_.pairs) ++case_counts_[pair.sign_case];

  // Updater: norms of the final gradients of T' and T'' (whole towers).
  const double own_norm = std::sqrt(squared_norm(ctx, own_tower));
  const double shared_norm = std::sqrt(squared_norm(ctx, shared_tower));
  const auto [mu_own, mu_shared] = updater_.update(own_norm, shared_norm);
  model.set_mixing(mu_own, mu_shared);

  if (telemetry_.is_open() && step % settings_.telemetry_every == 0) {
    std::vector<double> xi1, lambda1, cases, aux_norms;
    for (std::size_t a = 0; a < last_.pairs.size(); ++a) {
      xi1.push_back(last_.pairs[a].xi1);
      lambda1.push_back(last_.pairs[a].lambda1);
      cases.push_back(last_.pairs[a].sign_case);
      aux_norms.push_back(std::sqrt(products.aux_norm2[a]));
    }
    const RouterPair& first = last_.pairs.front();
    telemetry_ << "{\"step\": " << step << ", \"xi1\": " << json_list(xi1)
               << ", \"xi2\": " << std::setprecision(7) << first.xi2
               << ", \"lambda1\": " << json_list(lambda1) << ", \"lambda2\": " << first.lambda2
               << ", \"case\": " << json_list(cases) << ", \"case_counts\": [" << case_counts_[0]
               << ", " << case_counts_[1] << ", " << case_counts_[2] << ", " << case_counts_[3]
               << "], \"mu_own\": " << mu_own << ", \"mu_shared\": " << mu_shared
               << ", \"norm_own\": " << std::sqrt(products.own_norm2)
               << ", \"norm_shared\": " << std::sqrt(products.shared_norm2)
               << ", \"norm_aux\": " << json_list(aux_norms) << "}\n";
    telemetry_.flush();
  }
}

void DrgradStrategy::save_state(std::map<std::string, Tensor>& tensors) const {
  tensors["strategy/drgrad/state"] = Tensor::from_vector<double>(
      {6}, {updater_.sigma_own, updater_.sigma_shared, static_cast<double>(case_counts_[0]),
            static_cast<double>(case_counts_[1]), static_cast<double>(case_counts_[2]),
            static_cast<double>(case_counts_[3])});
}

void DrgradStrategy::load_state(const std::map<std::string, Tensor>& tensors,
                                MultiTaskModel<float>& model) {
  const auto found = tensors.find("strategy/drgrad/state");
  if (found == tensors.end()) {
    throw std::invalid_argument(
        "the checkpoint has no DRGrad state; it was written by a run "
        "with another strategy");
  }
  const auto values = found->second.to_vector<double>();
  updater_.sigma_own = values.at(0);
  updater_.sigma_shared = values.at(1);
  for (int c = 0; c < 4; ++c) case_counts_[c] = static_cast<std::int64_t>(values.at(2 + c));
  const auto [mu_own, mu_shared] = updater_.mixing();
  model.set_mixing(mu_own, mu_shared);
}

}  // namespace drgrad::engine
