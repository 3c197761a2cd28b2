// DRGrad's strategy on the fused router passes against the path it replaced: after_backward
// gives the bits of the old per-parameter dot / axpy code (reproduced here), and the training
// step (route and update the towers in one pass, the optimizer the rest) gives the bits of
// after_backward followed by the optimizer's step, for every form, both scopes, three tasks and
// every optimizer. Also the refusal of more auxiliary tasks than the router holds.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/core/random.h"
#include "engine/multitask/drgrad_strategy.h"
#include "engine/optim/optimizer.h"
#include "kernels/vector/vector_ops.h"

using namespace drgrad;
using namespace drgrad::engine;

namespace {

ModelSpec split_model(int num_tasks) {
  ModelSpec spec;
  spec.num_dense = 3;
  for (int t = 0; t < num_tasks; ++t) {
    spec.tasks.push_back({"task" + std::to_string(t), t, TaskType::kBinary, 1, 1});
  }
  spec.backbone = BackboneKind::kMmoe;
  spec.num_experts = 2;
  spec.expert_units = {4};
  spec.tower_units = {5, 3};
  spec.split.enabled = true;
  return spec;
}

// Fresh gradients on every parameter; the towers lean on each other by a random amount so that
// the coefficients are non-trivial.
void fill_gradients(MultiTaskModel<float>& model, Random& random) {
  for (const auto& parameter : model.parameters().all()) {
    std::vector<float> values(static_cast<std::size_t>(parameter->gradient.numel()));
    for (auto& v : values) v = static_cast<float>(random.uniform(-1, 1));
    parameter->gradient.copy_from(Tensor::from_vector<float>(parameter->gradient.shape(), values));
  }
}

std::vector<std::vector<float>> values_of(const ParameterStore& store, bool gradients) {
  std::vector<std::vector<float>> out;
  for (const auto& p : store.all()) {
    out.push_back(gradients ? p->gradient.to_vector<float>() : p->value.to_vector<float>());
  }
  return out;
}

std::vector<std::vector<float>> state_of(const Optimizer<float>& optimizer) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, tensor] : optimizer.state()) out.push_back(tensor.to_vector<float>());
  return out;
}

// The strategy's code before the fused passes, on the CPU: dot per parameter, the coefficients,
// axpy per term, the whole-tower norms, the updater.
struct OldStrategy {
  RouterSettings router;
  MixingUpdater updater;

  void after_backward(MultiTaskModel<float>& model) {
    const kernels::Context ctx = kernels::Context::cpu();
    const ParameterStore& store = model.parameters();
    auto routed = [&](const std::string& group) {
      std::vector<Parameter*> out;
      for (Parameter* p : store.group(group)) {
        if (router.scope == RoutedParameters::kAll ||
            p->name.find("/layer0/") != std::string::npos) {
          out.push_back(p);
        }
      }
      return out;
    };
    auto dot = [&](const Parameter* a, const Parameter* b) {
      return kernels::dot<float>(ctx, a->gradient.numel(), a->gradient.data<float>(),
                                 b->gradient.data<float>());
    };
    auto squared_norm = [&](const std::vector<Parameter*>& tower) {
      double total = 0;
      for (const Parameter* p : tower) total += dot(p, p);
      return total;
    };
    auto inner = [&](const std::vector<Parameter*>& a, const std::vector<Parameter*>& b) {
      double total = 0;
      for (std::size_t i = 0; i < a.size(); ++i) total += dot(a[i], b[i]);
      return total;
    };
    auto entry_sum = [&](const std::vector<Parameter*>& tower) {
      double total = 0;
      for (const Parameter* p : tower) {
        const std::vector<float> ones(static_cast<std::size_t>(p->gradient.numel()), 1.f);
        total +=
            kernels::dot<float>(ctx, p->gradient.numel(), p->gradient.data<float>(), ones.data());
      }
      return total;
    };
    const auto own = routed(model.primary_own_group());
    const auto shared = routed(model.primary_shared_group());
    std::vector<std::vector<Parameter*>> aux;
    for (int k = 0; k < static_cast<int>(model.spec().tasks.size()); ++k) {
      if (k != model.spec().split.primary_task) aux.push_back(routed(model.tower_group(k)));
    }
    TowerGradientProducts products;
    products.own_norm2 = squared_norm(own);
    products.shared_norm2 = squared_norm(shared);
    products.own_dot_shared = inner(own, shared);
    products.own_sum = entry_sum(own);
    for (const auto& tower : aux) {
      products.aux_norm2.push_back(squared_norm(tower));
      products.own_dot_aux.push_back(inner(own, tower));
      products.aux_sum.push_back(entry_sum(tower));
    }
    const RouterCoefficients c = compute_router_coefficients(products, router);
    const bool symmetric = router.form == RouterForm::kSymmetricHeads;
    for (std::size_t i = 0; i < own.size(); ++i) {
      const std::vector<float> original_own = own[i]->gradient.to_vector<float>();
      float* g_own = own[i]->gradient.data<float>();
      const std::int64_t n = own[i]->gradient.numel();
      if (c.own_from_shared != 0) {
        kernels::axpy<float>(ctx, n, static_cast<float>(c.own_from_shared),
                             shared[i]->gradient.data<float>(), g_own);
      }
      for (std::size_t a = 0; a < aux.size(); ++a) {
        if (c.own_from_aux[a] != 0) {
          kernels::axpy<float>(ctx, n, static_cast<float>(c.own_from_aux[a]),
                               aux[a][i]->gradient.data<float>(), g_own);
        }
      }
      if (c.shared_from_shared != 0) {
        float* g_shared = shared[i]->gradient.data<float>();
        kernels::axpy<float>(ctx, n, static_cast<float>(c.shared_from_shared), g_shared, g_shared);
      }
      if (symmetric) {
        for (std::size_t a = 0; a < aux.size(); ++a) {
          kernels::axpy<float>(ctx, n, static_cast<float>(c.aux_from_own[a]), original_own.data(),
                               aux[a][i]->gradient.data<float>());
        }
      }
    }
    const double own_norm = std::sqrt(squared_norm(store.group(model.primary_own_group())));
    const double shared_norm = std::sqrt(squared_norm(store.group(model.primary_shared_group())));
    const auto [mu_own, mu_shared] = updater.update(own_norm, shared_norm);
    model.set_mixing(mu_own, mu_shared);
  }
};

const RouterForm kForms[] = {RouterForm::kPaper, RouterForm::kPaired, RouterForm::kSymmetricHeads};
const RoutedParameters kScopes[] = {RoutedParameters::kAll, RoutedParameters::kFirstLayer};

}  // namespace

TEST_CASE("DRGrad after_backward gives the bits of the unfused strategy", "[router][fused]") {
  for (const RouterForm form : kForms) {
    for (const RoutedParameters scope : kScopes) {
      INFO(router_form_name(form) << ", " << routed_parameters_name(scope));
      const ModelSpec spec = split_model(3);
      MultiTaskModel<float> fused_model(spec, kernels::Context::cpu(), 1);
      MultiTaskModel<float> old_model(spec, kernels::Context::cpu(), 1);
      DrgradSettings settings;
      settings.router = {form, scope, 1.5};
      settings.rho = 0.8;
      DrgradStrategy strategy(settings, fused_model);
      OldStrategy old{settings.router, {}};
      old.updater.rho = settings.rho;
      Random fused_random(9), old_random(9);
      for (std::int64_t step = 1; step <= 4; ++step) {
        fill_gradients(fused_model, fused_random);
        fill_gradients(old_model, old_random);
        strategy.after_backward(fused_model, step);
        old.after_backward(old_model);
        CHECK(values_of(fused_model.parameters(), true) == values_of(old_model.parameters(), true));
        CHECK(fused_model.mu_own() == old_model.mu_own());
        CHECK(fused_model.mu_shared() == old_model.mu_shared());
      }
      const auto cases = strategy.case_counts();
      CHECK(cases[0] + cases[1] + cases[2] + cases[3] == 4 * 2);  // 4 steps, 2 auxiliary pairs
    }
  }
}

TEST_CASE("DRGrad's fused training step gives the bits of after_backward + optimizer step",
          "[router][fused]") {
  for (const OptimizerKind kind :
       {OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdagrad}) {
    for (const RouterForm form : kForms) {
      for (const RoutedParameters scope : kScopes) {
        INFO("optimizer " << static_cast<int>(kind) << ", " << router_form_name(form) << ", "
                          << routed_parameters_name(scope));
        const ModelSpec spec = split_model(3);
        MultiTaskModel<float> fused_model(spec, kernels::Context::cpu(), 1);
        MultiTaskModel<float> plain_model(spec, kernels::Context::cpu(), 1);
        OptimizerSpec optimizer_spec;
        optimizer_spec.kind = kind;
        optimizer_spec.learning_rate = 0.01;
        optimizer_spec.weight_decay = 1e-3;
        Optimizer<float> fused_optimizer(optimizer_spec, fused_model.parameters());
        Optimizer<float> plain_optimizer(optimizer_spec, plain_model.parameters());
        DrgradSettings settings;
        settings.router = {form, scope, 1.0};
        DrgradStrategy fused(settings, fused_model);
        DrgradStrategy plain(settings, plain_model);
        Random fused_random(21), plain_random(21);
        for (std::int64_t step = 1; step <= 4; ++step) {
          fill_gradients(fused_model, fused_random);
          fill_gradients(plain_model, plain_random);
          fused.after_backward_and_step(fused_model, fused_optimizer, step);
          plain.after_backward(plain_model, step);
          plain_optimizer.step(plain_model.parameters());
          CHECK(values_of(fused_model.parameters(), false) ==
                values_of(plain_model.parameters(), false));
          CHECK(state_of(fused_optimizer) == state_of(plain_optimizer));
          CHECK(fused_model.mu_own() == plain_model.mu_own());
          CHECK(fused_optimizer.steps_taken() == plain_optimizer.steps_taken());
        }
        CHECK(fused.case_counts() == plain.case_counts());
      }
    }
  }
}

TEST_CASE("DRGrad refuses more auxiliary tasks than the router holds", "[router]") {
  const ModelSpec spec = split_model(kernels::kRouterMaxAuxiliaryTowers + 2);
  MultiTaskModel<float> model(spec, kernels::Context::cpu(), 1);
  CHECK_THROWS_WITH(DrgradStrategy(DrgradSettings{}, model),
                    Catch::Contains("at most 16 auxiliary tasks") && Catch::Contains("17"));
}
