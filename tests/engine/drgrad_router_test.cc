// DRGrad's router and updater on hand-computed inner products: the four sign cases for each
// form, zero norms, gamma, the K-task rule, the updater's softmax and decay, and the
// application of the coefficients to a model's tower gradients.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/multitask/drgrad_strategy.h"

using namespace drgrad;
using namespace drgrad::engine;

namespace {
// |g1'| = 2, |g1''| = 1, |g2| = 4. xi1 = own_dot_aux / 8, xi2 = own_dot_shared / 2.
TowerGradientProducts two_task(double own_dot_aux, double own_dot_shared) {
  TowerGradientProducts p;
  p.own_norm2 = 4;
  p.shared_norm2 = 1;
  p.own_dot_shared = own_dot_shared;
  p.aux_norm2 = {16};
  p.own_dot_aux = {own_dot_aux};
  p.own_sum = 2;
  p.aux_sum = {2};
  return p;
}

struct Expected {
  double own_from_shared, own_from_aux, shared_from_shared;
};

void check(const RouterCoefficients& c, const Expected& e) {
  CHECK(c.own_from_shared == Approx(e.own_from_shared));
  CHECK(c.own_from_aux.at(0) == Approx(e.own_from_aux));
  CHECK(c.shared_from_shared == Approx(e.shared_from_shared));
}
}  // namespace

// In every case lambda1 = clip(2 / 4) = 0.5 and lambda2 = clip(2 / 1) = 1.
TEST_CASE("router, paper form: the four sign cases of the table", "[router]") {
  const RouterSettings paper{RouterForm::kPaper, RoutedParameters::kAll, 1.0};
  // xi1 = 0.5, xi2 = 0.5: extra for T1' = lambda1 g1'' + lambda2 g2; none for T1''.
  auto c = compute_router_coefficients(two_task(4, 1), paper);
  check(c, {0.5, 1.0, 0.0});
  CHECK(c.pairs[0].sign_case == 0);
  CHECK(c.pairs[0].xi1 == Approx(0.5));
  CHECK(c.pairs[0].lambda1 == Approx(0.5));
  CHECK(c.pairs[0].lambda2 == Approx(1.0));
  // xi1 = 0.5, xi2 = -0.5: T1' gets lambda1 g1''; T1'' gets -xi1 xi2 g1'' = 0.25 g1''.
  c = compute_router_coefficients(two_task(4, -1), paper);
  check(c, {0.5, 0.0, 0.25});
  CHECK(c.pairs[0].sign_case == 1);
  // xi1 = -0.5, xi2 = 0.5: T1' gets (1 - xi1) lambda1 g1'' + lambda2 g2 = 0.75 g1'' + g2;
  // T1'' gets -xi1 xi2 g1'' = 0.25 g1''.
  c = compute_router_coefficients(two_task(-4, 1), paper);
  check(c, {0.75, 1.0, 0.25});
  CHECK(c.pairs[0].sign_case == 2);
  // xi1 = -0.5, xi2 = -0.5: T1' gets (1 - xi1) lambda1 g1'' = 0.75 g1''; T1'' nothing.
  c = compute_router_coefficients(two_task(-4, -1), paper);
  check(c, {0.75, 0.0, 0.0});
  CHECK(c.pairs[0].sign_case == 3);
}

TEST_CASE("router, paired form: each stake scales the gradient it was measured on", "[router]") {
  const RouterSettings paired{RouterForm::kPaired, RoutedParameters::kAll, 1.0};
  // gR1' = (1 - [xi1 < 0] xi1) lambda1 g2 + [xi2 >= 0] lambda2 g1''
  check(compute_router_coefficients(two_task(4, 1), paired), {1.0, 0.5, 0.0});
  check(compute_router_coefficients(two_task(4, -1), paired), {0.0, 0.5, 0.25});
  check(compute_router_coefficients(two_task(-4, 1), paired), {1.0, 0.75, 0.25});
  check(compute_router_coefficients(two_task(-4, -1), paired), {0.0, 0.75, 0.0});
}

TEST_CASE("router, symmetric_heads form: the first author's exchange between heads", "[router]") {
  const RouterSettings heads{RouterForm::kSymmetricHeads, RoutedParameters::kAll, 1.0};
  // sum(g1'/|g1'|) = 2 / 2 = 1, sum(g2/|g2|) = 2 / 4 = 0.5: w(own) = clip(2) = 2,
  // w(aux) = clip(0.5) = 0.5. c = xi1.
  auto c = compute_router_coefficients(two_task(4, 1), heads);  // c = 0.5 > 0: factor 1
  CHECK(c.own_from_aux[0] == Approx(2.0));
  CHECK(c.aux_from_own[0] == Approx(0.5));
  CHECK(c.own_from_shared == 0.0);
  CHECK(c.shared_from_shared == 0.0);
  c = compute_router_coefficients(two_task(-4, 1), heads);  // c = -0.5: factor 1.5
  CHECK(c.own_from_aux[0] == Approx(3.0));
  CHECK(c.aux_from_own[0] == Approx(0.75));
  // The ratio is clipped to [0.1, 5].
  TowerGradientProducts lopsided = two_task(4, 1);
  lopsided.own_sum = 40;  // sum(g1'/|g1'|) = 20: ratio 40, clipped to 5; the other 1/40 -> 0.1
  c = compute_router_coefficients(lopsided, heads);
  CHECK(c.own_from_aux[0] == Approx(5.0));
  CHECK(c.aux_from_own[0] == Approx(0.1));
}

TEST_CASE("router guards every division: zero norms give zero cosines and stakes", "[router]") {
  for (const auto form : {RouterForm::kPaper, RouterForm::kPaired, RouterForm::kSymmetricHeads}) {
    TowerGradientProducts zero;
    zero.aux_norm2 = {0};
    zero.own_dot_aux = {0};
    zero.aux_sum = {0};
    const auto c = compute_router_coefficients(zero, {form, RoutedParameters::kAll, 1.0});
    CHECK(c.pairs[0].xi1 == 0.0);
    CHECK(c.pairs[0].xi2 == 0.0);
    CHECK(c.pairs[0].lambda1 == 0.0);
    CHECK(c.pairs[0].lambda2 == 0.0);
    CHECK(std::isfinite(c.own_from_shared));
    CHECK(std::isfinite(c.own_from_aux[0]));
    CHECK(std::isfinite(c.shared_from_shared));
    CHECK(std::isfinite(c.aux_from_own[0]));
    if (form != RouterForm::kSymmetricHeads) {
      CHECK(c.own_from_shared == 0.0);
      CHECK(c.own_from_aux[0] == 0.0);
    }
  }
  // Only the auxiliary gradient vanishes: xi1 = 0 and lambda1 = 0, xi2 as usual.
  TowerGradientProducts no_aux = two_task(0, 1);
  no_aux.aux_norm2 = {0};
  const auto c = compute_router_coefficients(no_aux, {});
  CHECK(c.pairs[0].xi1 == 0.0);
  CHECK(c.pairs[0].lambda1 == 0.0);
  CHECK(c.pairs[0].xi2 == Approx(0.5));
}

TEST_CASE("router: gamma sharpens the stakes", "[router]") {
  const auto c = compute_router_coefficients(two_task(4, 1),
                                             {RouterForm::kPaper, RoutedParameters::kAll, 2.0});
  CHECK(c.pairs[0].lambda1 == Approx(0.25));  // 0.5 ^ 2
  CHECK(c.pairs[0].lambda2 == Approx(1.0));   // clipped at 1 before the power
  CHECK(c.own_from_shared == Approx(0.25));
}

TEST_CASE("router: the K-task rule sums auxiliary terms and averages g1'' terms", "[router]") {
  const RouterSettings paper{RouterForm::kPaper, RoutedParameters::kAll, 1.0};
  // One auxiliary task: exactly Eq. 1-3.
  const auto single = compute_router_coefficients(two_task(-4, 1), paper);
  // Two auxiliary towers, the first as above (case xi1 < 0), the second with xi1 = 0.5.
  TowerGradientProducts both = two_task(-4, 1);
  both.aux_norm2 = {16, 16};
  both.own_dot_aux = {-4, 4};
  both.aux_sum = {2, 2};
  const auto c = compute_router_coefficients(both, paper);
  CHECK(c.own_from_shared == Approx((0.75 + 0.5) / 2));    // g1'' terms averaged
  CHECK(c.own_from_aux == std::vector<double>{1.0, 1.0});  // each g_k term kept (summed)
  CHECK(c.shared_from_shared == Approx((0.25 + 0.0) / 2));
  CHECK(single.own_from_shared == Approx(0.75));
  // Two identical auxiliary towers average back to the single-task coefficients.
  TowerGradientProducts twins = two_task(-4, 1);
  twins.aux_norm2 = {16, 16};
  twins.own_dot_aux = {-4, -4};
  twins.aux_sum = {2, 2};
  const auto t = compute_router_coefficients(twins, paper);
  CHECK(t.own_from_shared == Approx(single.own_from_shared));
  CHECK(t.shared_from_shared == Approx(single.shared_from_shared));
}

TEST_CASE("updater: softmax of running norm sums, with decay", "[router]") {
  MixingUpdater updater;
  CHECK(updater.mixing().first == Approx(0.5));
  auto [own, shared] = updater.update(1.0, 0.0);
  CHECK(own == Approx(std::exp(1.0) / (std::exp(1.0) + 1.0)));
  CHECK(own + shared == Approx(1.0));
  std::tie(own, shared) = updater.update(1.0, 0.0);  // sigma' = 2
  CHECK(own == Approx(std::exp(2.0) / (std::exp(2.0) + 1.0)));
  MixingUpdater decayed;
  decayed.rho = 0.5;
  decayed.update(1.0, 0.0);
  decayed.update(1.0, 0.0);  // sigma' = 0.5 * 1 + 1
  CHECK(decayed.sigma_own == Approx(1.5));
  // Large sums do not overflow.
  MixingUpdater saturated;
  saturated.update(5000.0, 0.0);
  CHECK(saturated.mixing().first == Approx(1.0));
  CHECK(std::isfinite(saturated.mixing().second));
}

TEST_CASE("DRGrad strategy applies the coefficients to the tower gradients", "[router]") {
  ModelSpec spec;
  spec.num_dense = 3;
  spec.tasks = {{"main", 0, TaskType::kBinary, 1, 1}, {"aux", 1, TaskType::kBinary, 1, 1}};
  spec.backbone = BackboneKind::kMmoe;
  spec.num_experts = 2;
  spec.expert_units = {4};
  spec.tower_units = {3};
  spec.split.enabled = true;
  for (const auto scope : {RoutedParameters::kAll, RoutedParameters::kFirstLayer}) {
    MultiTaskModel<float> model(spec, kernels::Context::cpu(), 1);
    ParameterStore& store = model.parameters();
    // Fill the towers' gradients with known values.
    Random random(5);
    for (const auto& parameter : store.all()) {
      std::vector<float> values(static_cast<std::size_t>(parameter->gradient.numel()));
      for (auto& v : values) v = static_cast<float>(random.uniform(-1, 1));
      parameter->gradient.copy_from(
          Tensor::from_vector<float>(parameter->gradient.shape(), values));
    }
    auto gradients = [&](const std::string& group) {
      std::vector<std::vector<float>> out;
      for (Parameter* p : store.group(group)) out.push_back(p->gradient.to_vector<float>());
      return out;
    };
    const auto own = gradients("tower/main/own");
    const auto shared = gradients("tower/main/shared");
    const auto aux = gradients("tower/aux");
    DrgradSettings settings;
    settings.router.scope = scope;
    DrgradStrategy strategy(settings, model);
    strategy.after_backward(model, 1);
    const RouterCoefficients& c = strategy.last_coefficients();
    const auto own_after = gradients("tower/main/own");
    const auto shared_after = gradients("tower/main/shared");
    const std::size_t routed_count = scope == RoutedParameters::kAll ? own.size() : 2;
    for (std::size_t i = 0; i < own.size(); ++i) {
      for (std::size_t j = 0; j < own[i].size(); ++j) {
        const bool routed = i < routed_count;
        const double expected_own =
            own[i][j] +
            (routed ? c.own_from_shared * shared[i][j] + c.own_from_aux[0] * aux[i][j] : 0.0);
        const double expected_shared = shared[i][j] * (1.0 + (routed ? c.shared_from_shared : 0.0));
        CHECK(own_after[i][j] == Approx(expected_own).margin(1e-6));
        CHECK(shared_after[i][j] == Approx(expected_shared).margin(1e-6));
      }
    }
    CHECK(gradients("tower/aux") == aux);  // the auxiliary tower keeps its own gradient
    CHECK(model.mu_own() + model.mu_shared() == Approx(1.0));
    CHECK(model.mu_own() != 0.5);
  }
}
