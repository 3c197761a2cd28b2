// DrgradStrategy: builds (once) the segment tables of the towers, runs the fused router passes of
// kernels/multitask/drgrad_router.h on the model's device, hands the towers' update to the fused
// pass and the rest to the optimizer, and writes telemetry.
#include "engine/multitask/drgrad_strategy.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace drgrad::engine {

namespace {
bool is_routed(const Parameter& parameter, RoutedParameters scope) {
  return scope == RoutedParameters::kAll || parameter.name.find("/layer0/") != std::string::npos;
}

bool same_tower_arrays(const kernels::RouterTowerArrays<float>& a,
                       const kernels::RouterTowerArrays<float>& b) {
  return a.weights == b.weights && a.gradients == b.gradients && a.state_a == b.state_a &&
         a.state_b == b.state_b;
}

bool same_segments(const std::vector<kernels::RouterProductSegment<float>>& a,
                   const std::vector<kernels::RouterProductSegment<float>>& b, int num_aux) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].own != b[i].own || a[i].shared != b[i].shared || a[i].n != b[i].n) return false;
    for (int k = 0; k < num_aux; ++k) {
      if (a[i].aux[k] != b[i].aux[k]) return false;
    }
  }
  return true;
}

bool same_segments(const std::vector<kernels::RouterApplySegment<float>>& a,
                   const std::vector<kernels::RouterApplySegment<float>>& b, int num_aux) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].n != b[i].n || a[i].routed != b[i].routed || !same_tower_arrays(a[i].own, b[i].own) ||
        !same_tower_arrays(a[i].shared, b[i].shared)) {
      return false;
    }
    for (int k = 0; k < num_aux; ++k) {
      if (!same_tower_arrays(a[i].aux[k], b[i].aux[k])) return false;
    }
  }
  return true;
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
    : settings_(settings), workspace_(model.context().device) {
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
  rule_ = router_rule(settings.router, aux_groups_.size());
  if (!settings.telemetry_path.empty() && settings.telemetry_every > 0) {
    const auto folder = std::filesystem::path(settings.telemetry_path).parent_path();
    if (!folder.empty()) std::filesystem::create_directories(folder);
    telemetry_.open(settings.telemetry_path, std::ios::app);
  }
}

void DrgradStrategy::refresh_tables(const MultiTaskModel<float>& model,
                                    Optimizer<float>* optimizer) {
  const ParameterStore& store = model.parameters();
  const auto own = store.group(model.primary_own_group());
  const auto shared = store.group(model.primary_shared_group());
  std::vector<std::vector<Parameter*>> aux;
  for (const auto& group : aux_groups_) aux.push_back(store.group(group));
  auto arrays = [&](Parameter* parameter) {
    kernels::RouterTowerArrays<float> tower;
    tower.weights = parameter->value.data<float>();
    tower.gradients = parameter->gradient.data<float>();
    if (optimizer != nullptr) {
      std::tie(tower.state_a, tower.state_b) = optimizer->state_arrays(*parameter);
    }
    return tower;
  };
  std::vector<kernels::RouterProductSegment<float>> products;
  std::vector<kernels::RouterApplySegment<float>> applies;
  for (std::size_t i = 0; i < own.size(); ++i) {
    const bool routed = is_routed(*own[i], settings_.router.scope);
    kernels::RouterApplySegment<float> apply;
    apply.own = arrays(own[i]);
    apply.shared = arrays(shared[i]);
    for (std::size_t k = 0; k < aux.size(); ++k) apply.aux[k] = arrays(aux[k][i]);
    apply.n = own[i]->value.numel();
    apply.routed = routed ? 1 : 0;
    applies.push_back(apply);
    if (!routed) continue;
    kernels::RouterProductSegment<float> product;
    product.own = apply.own.gradients;
    product.shared = apply.shared.gradients;
    for (std::size_t k = 0; k < aux.size(); ++k) product.aux[k] = apply.aux[k].gradients;
    product.n = apply.n;
    products.push_back(product);
  }
  const kernels::Device device = model.context().device;
  if (product_table_.empty() || !same_segments(products, product_segments_, rule_.num_aux)) {
    product_segments_ = products;
    product_table_ =
        kernels::make_router_product_table<float>(device, rule_.num_aux, std::move(products));
  }
  if (apply_table_.empty() || !same_segments(applies, apply_segments_, rule_.num_aux)) {
    apply_segments_ = applies;
    apply_table_ =
        kernels::make_router_apply_table<float>(device, rule_.num_aux, std::move(applies));
  }
}

void DrgradStrategy::run_router(MultiTaskModel<float>& model, Optimizer<float>* optimizer) {
  const kernels::Context& ctx = model.context();
  refresh_tables(model, optimizer);
  // (a) every inner product in one pass, (b) the coefficients: both stay in device memory.
  kernels::router_products<float>(ctx, product_table_, rule_.num_aux, workspace_);
  // In a training step every pass that changes the router's state reads the optimizer's skip
  // flag (a refused step changes nothing); outside one there is none.
  const std::int64_t* skip = optimizer != nullptr ? optimizer->skip_flag() : nullptr;
  kernels::router_coefficients(ctx, rule_, workspace_, skip);
  // (c) route; in a training step, update the towers in the same pass and let the optimizer do
  // the rest, else write the routed gradients back for the optimizer to read.
  if (optimizer != nullptr) {
    const kernels::UpdateRule update = optimizer->next_dense_rule();
    kernels::router_apply<float>(ctx, apply_table_, rule_.num_aux, &update,
                                 /*write_gradients=*/false, workspace_, skip);
    ParameterStore& store = model.parameters();
    for (const std::string& group : aux_groups_) {
      for (const Parameter* p : store.group(group)) optimizer->skip_in_next_step(*p);
    }
    for (const Parameter* p : store.group(model.primary_own_group())) {
      optimizer->skip_in_next_step(*p);
    }
    for (const Parameter* p : store.group(model.primary_shared_group())) {
      optimizer->skip_in_next_step(*p);
    }
    optimizer->step(store);
  } else {
    kernels::router_apply<float>(ctx, apply_table_, rule_.num_aux, nullptr,
                                 /*write_gradients=*/true, workspace_);
  }
  // (d) the updater, on the device.
  kernels::router_update_mixing(ctx, settings_.rho, workspace_, skip);
  // The model reads the mixing weights from its device memory: a 16-byte device copy, no host
  // synchronisation.
  static_assert(offsetof(kernels::RouterState, mu_shared) ==
                    offsetof(kernels::RouterState, mu_own) + sizeof(double),
                "the model copies mu' and mu'' as two adjacent doubles");
  model.copy_mixing_from(&workspace_.state()->mu_own);
}

void DrgradStrategy::after_step(std::int64_t step) {
  // Reading the router's state waits for the device: outside the step, so that the step itself
  // never does (and can be captured in a CUDA graph).
  if (telemetry_.is_open() && step % settings_.telemetry_every == 0) {
    write_telemetry(step, workspace_.read_state());
  }
}

void DrgradStrategy::after_backward(MultiTaskModel<float>& model, std::int64_t /*step*/) {
  run_router(model, nullptr);
}

void DrgradStrategy::after_backward_and_step(MultiTaskModel<float>& model,
                                             Optimizer<float>& optimizer, std::int64_t /*step*/) {
  run_router(model, &optimizer);
}

RouterCoefficients DrgradStrategy::last_coefficients() const {
  return to_router_coefficients(workspace_.read_state().coefficients);
}

std::array<std::int64_t, 4> DrgradStrategy::case_counts() const {
  const kernels::RouterState state = workspace_.read_state();
  return {state.case_counts[0], state.case_counts[1], state.case_counts[2], state.case_counts[3]};
}

void DrgradStrategy::write_telemetry(std::int64_t step, const kernels::RouterState& state) {
  const RouterCoefficients last = to_router_coefficients(state.coefficients);
  std::vector<double> xi1, lambda1, cases, aux_norms;
  for (std::size_t a = 0; a < last.pairs.size(); ++a) {
    xi1.push_back(last.pairs[a].xi1);
    lambda1.push_back(last.pairs[a].lambda1);
    cases.push_back(last.pairs[a].sign_case);
    aux_norms.push_back(std::sqrt(state.products[kernels::product_aux_norm2(static_cast<int>(a))]));
  }
  const RouterPair& first = last.pairs.front();
  telemetry_ << "{\"step\": " << step << ", \"xi1\": " << json_list(xi1)
             << ", \"xi2\": " << std::setprecision(7) << first.xi2
             << ", \"lambda1\": " << json_list(lambda1) << ", \"lambda2\": " << first.lambda2
             << ", \"case\": " << json_list(cases) << ", \"case_counts\": [" << state.case_counts[0]
             << ", " << state.case_counts[1] << ", " << state.case_counts[2] << ", "
             << state.case_counts[3] << "], \"mu_own\": " << state.mu_own
             << ", \"mu_shared\": " << state.mu_shared
             << ", \"norm_own\": " << std::sqrt(state.products[kernels::kProductOwnNorm2])
             << ", \"norm_shared\": " << std::sqrt(state.products[kernels::kProductSharedNorm2])
             << ", \"norm_aux\": " << json_list(aux_norms) << "}\n";
  telemetry_.flush();
}

void DrgradStrategy::save_state(std::map<std::string, Tensor>& tensors) const {
  const kernels::RouterState state = workspace_.read_state();
  tensors["strategy/drgrad/state"] = Tensor::from_vector<double>(
      {6}, {state.sigma_own, state.sigma_shared, static_cast<double>(state.case_counts[0]),
            static_cast<double>(state.case_counts[1]), static_cast<double>(state.case_counts[2]),
            static_cast<double>(state.case_counts[3])});
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
  kernels::RouterState state = workspace_.read_state();
  state.sigma_own = values.at(0);
  state.sigma_shared = values.at(1);
  for (int c = 0; c < 4; ++c) state.case_counts[c] = static_cast<std::int64_t>(values.at(2 + c));
  kernels::mixing_softmax(state.sigma_own, state.sigma_shared, &state.mu_own, &state.mu_shared);
  workspace_.write_state(state);
  model.set_mixing(state.mu_own, state.mu_shared);
}

}  // namespace drgrad::engine
