// The fused DRGrad router passes (CPU twin) against the unfused path they replace, reproduced
// here: per-parameter dot products, the coefficients, the axpy sequence on the gradients, the
// whole-tower norms, one optimizer step per parameter and the updater. Every router form, both
// scopes, 2 and 4 auxiliary towers, SGD / Adam / Adagrad, float and double: same bits expected,
// since the order of operations is the same. Also products on inputs with an exact result, and
// the refusal of more auxiliary towers than the router holds.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/multitask/drgrad_router.h"
#include "kernels/optimizer/optimizer.h"
#include "kernels/vector/vector_ops.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::Context;
using kernels::Device;
using kernels::RouterRuleForm;
using kernels::UpdateKind;

// One tower: per parameter position, weights, gradients and two state arrays.
template <typename T>
struct Tower {
  std::vector<std::vector<T>> weights, gradients, state_a, state_b;
};

template <typename T>
std::vector<T> random_values(std::size_t n, std::mt19937& random, double low, double high) {
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<T> values(n);
  for (T& value : values) value = static_cast<T>(distribution(random));
  return values;
}

// Parameter positions of awkward sizes; the first two play the first layer (weight, bias).
const std::vector<std::size_t> kSizes{37, 5, 300, 1, 65};

template <typename T>
Tower<T> random_tower(std::mt19937& random) {
  Tower<T> tower;
  for (const std::size_t n : kSizes) {
    tower.weights.push_back(random_values<T>(n, random, -1, 1));
    tower.gradients.push_back(random_values<T>(n, random, -1, 1));
    tower.state_a.push_back(random_values<T>(n, random, 0, 0.5));
    tower.state_b.push_back(random_values<T>(n, random, 0, 0.01));
  }
  return tower;
}

// Fresh gradients for a step: the shared tower and the auxiliary towers lean towards or away from
// g1' by a random amount, so that every sign case turns up over the steps and seeds. Written in
// place: the segment tables point into these arrays.
template <typename T>
void fresh_gradients(std::mt19937& random, Tower<T>& own, Tower<T>& shared,
                     std::vector<Tower<T>>& aux) {
  std::uniform_real_distribution<double> lean(-1.5, 1.5);
  for (std::size_t p = 0; p < kSizes.size(); ++p) {
    const auto values = random_values<T>(kSizes[p], random, -1, 1);
    std::copy(values.begin(), values.end(), own.gradients[p].begin());
  }
  auto follow = [&](Tower<T>& tower) {
    const double weight = lean(random);
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      const auto noise = random_values<T>(kSizes[p], random, -0.5, 0.5);
      std::copy(noise.begin(), noise.end(), tower.gradients[p].begin());
      for (std::size_t i = 0; i < kSizes[p]; ++i) {
        tower.gradients[p][i] += static_cast<T>(weight) * own.gradients[p][i];
      }
    }
  };
  follow(shared);
  for (auto& tower : aux) follow(tower);
}

kernels::UpdateRule rule_of(UpdateKind kind, std::int64_t step) {
  switch (kind) {
    case UpdateKind::kSgd:
      return kernels::sgd_rule({.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f});
    case UpdateKind::kAdam:
      return kernels::adam_rule({.learning_rate = 1e-3f, .beta2 = 0.9999f, .weight_decay = 0.01f},
                                step);
    case UpdateKind::kAdagrad:
      return kernels::adagrad_rule(
          {.learning_rate = 0.1f, .epsilon = 1e-8f, .weight_decay = 1e-4f});
  }
  return {};
}

template <typename T>
void step_one(const kernels::UpdateRule& rule, std::int64_t step, Tower<T>& tower, std::size_t p) {
  const auto n = static_cast<std::int64_t>(kSizes[p]);
  const Context cpu = Context::cpu();
  switch (rule.kind) {
    case UpdateKind::kSgd:
      kernels::sgd_update<T>(cpu, rule.sgd, tower.weights[p].data(), tower.gradients[p].data(),
                             tower.state_a[p].data(), n);
      break;
    case UpdateKind::kAdam:
      kernels::adam_update<T>(cpu, rule.adam, step, tower.weights[p].data(),
                              tower.gradients[p].data(), tower.state_a[p].data(),
                              tower.state_b[p].data(), n);
      break;
    case UpdateKind::kAdagrad:
      kernels::adagrad_update<T>(cpu, rule.adagrad, tower.weights[p].data(),
                                 tower.gradients[p].data(), tower.state_a[p].data(), n);
      break;
  }
}

struct Reference {
  double products[kernels::kRouterMaxProducts] = {};
  kernels::RouterCoefficientValues coefficients;
  double final_own_norm2 = 0, final_shared_norm2 = 0;
  double sigma_own = 0, sigma_shared = 0, mu_own = 0.5, mu_shared = 0.5;
};

// The unfused path, as DrgradStrategy ran it before the fused passes: dot per parameter and
// product, the coefficients, axpy per parameter and term, the norms of the whole towers, then one
// optimizer step per parameter (when `update` is given) and the updater.
template <typename T>
void unfused_step(const kernels::RouterRule& rule, bool first_layer_only,
                  const kernels::UpdateRule* update, std::int64_t step, double rho, Tower<T>& own,
                  Tower<T>& shared, std::vector<Tower<T>>& aux, Reference& reference) {
  const Context cpu = Context::cpu();
  const int K = rule.num_aux;
  const std::size_t routed_count = first_layer_only ? 2 : kSizes.size();
  auto dot = [&](const std::vector<T>& a, const std::vector<T>& b) {
    return kernels::dot<T>(cpu, static_cast<std::int64_t>(a.size()), a.data(), b.data());
  };
  double* products = reference.products;
  for (int p = 0; p < kernels::kRouterMaxProducts; ++p) products[p] = 0;
  for (std::size_t p = 0; p < routed_count; ++p) {
    products[kernels::kProductOwnNorm2] += dot(own.gradients[p], own.gradients[p]);
  }
  for (std::size_t p = 0; p < routed_count; ++p) {
    products[kernels::kProductSharedNorm2] += dot(shared.gradients[p], shared.gradients[p]);
  }
  for (std::size_t p = 0; p < routed_count; ++p) {
    products[kernels::kProductOwnDotShared] += dot(own.gradients[p], shared.gradients[p]);
  }
  for (std::size_t p = 0; p < routed_count; ++p) {
    const std::vector<T> ones(kSizes[p], T(1));
    products[kernels::kProductOwnSum] += dot(own.gradients[p], ones);
  }
  for (int k = 0; k < K; ++k) {
    for (std::size_t p = 0; p < routed_count; ++p) {
      products[kernels::product_aux_norm2(k)] += dot(aux[k].gradients[p], aux[k].gradients[p]);
    }
    for (std::size_t p = 0; p < routed_count; ++p) {
      products[kernels::product_own_dot_aux(k)] += dot(own.gradients[p], aux[k].gradients[p]);
    }
    for (std::size_t p = 0; p < routed_count; ++p) {
      const std::vector<T> ones(kSizes[p], T(1));
      products[kernels::product_aux_sum(k)] += dot(aux[k].gradients[p], ones);
    }
  }
  kernels::compute_router_coefficient_values(products, rule, &reference.coefficients);
  const kernels::RouterCoefficientValues& c = reference.coefficients;
  for (std::size_t p = 0; p < routed_count; ++p) {
    const auto n = static_cast<std::int64_t>(kSizes[p]);
    const std::vector<T> original_own = own.gradients[p];
    T* g_own = own.gradients[p].data();
    if (c.own_from_shared != 0) {
      kernels::axpy<T>(cpu, n, T(c.own_from_shared), shared.gradients[p].data(), g_own);
    }
    for (int k = 0; k < K; ++k) {
      if (c.own_from_aux[k] != 0) {
        kernels::axpy<T>(cpu, n, T(c.own_from_aux[k]), aux[k].gradients[p].data(), g_own);
      }
    }
    if (c.shared_from_shared != 0) {
      T* g_shared = shared.gradients[p].data();
      kernels::axpy<T>(cpu, n, T(c.shared_from_shared), g_shared, g_shared);
    }
    if (rule.form == RouterRuleForm::kSymmetricHeads) {
      for (int k = 0; k < K; ++k) {
        kernels::axpy<T>(cpu, n, T(c.aux_from_own[k]), original_own.data(),
                         aux[k].gradients[p].data());
      }
    }
  }
  reference.final_own_norm2 = 0;
  reference.final_shared_norm2 = 0;
  for (std::size_t p = 0; p < kSizes.size(); ++p) {
    reference.final_own_norm2 += dot(own.gradients[p], own.gradients[p]);
  }
  for (std::size_t p = 0; p < kSizes.size(); ++p) {
    reference.final_shared_norm2 += dot(shared.gradients[p], shared.gradients[p]);
  }
  if (update != nullptr) {
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      step_one(*update, step, own, p);
      step_one(*update, step, shared, p);
      for (auto& tower : aux) step_one(*update, step, tower, p);
    }
  }
  kernels::mixing_accumulate(rho, std::sqrt(reference.final_own_norm2),
                             std::sqrt(reference.final_shared_norm2), &reference.sigma_own,
                             &reference.sigma_shared);
  kernels::mixing_softmax(reference.sigma_own, reference.sigma_shared, &reference.mu_own,
                          &reference.mu_shared);
}

template <typename T>
kernels::RouterTowerArrays<T> arrays_of(Tower<T>& tower, std::size_t p) {
  return {tower.weights[p].data(), tower.gradients[p].data(), tower.state_a[p].data(),
          tower.state_b[p].data()};
}

template <typename T>
void check_towers_equal(const Tower<T>& got, const Tower<T>& expected, bool gradients) {
  for (std::size_t p = 0; p < kSizes.size(); ++p) {
    INFO("position " << p);
    CHECK(got.weights[p] == expected.weights[p]);
    CHECK(got.state_a[p] == expected.state_a[p]);
    CHECK(got.state_b[p] == expected.state_b[p]);
    if (gradients) CHECK(got.gradients[p] == expected.gradients[p]);
  }
}

// Adds the sign cases it met to seen_cases.
template <typename T>
void check_fused_matches_unfused(RouterRuleForm form, bool first_layer_only, int num_aux,
                                 const UpdateKind* update_kind, std::uint32_t seed,
                                 std::int64_t* seen_cases) {
  std::mt19937 random(seed);
  Tower<T> own = random_tower<T>(random), shared = random_tower<T>(random);
  std::vector<Tower<T>> aux;
  for (int k = 0; k < num_aux; ++k) aux.push_back(random_tower<T>(random));
  // The reference works on copies; the fused passes on these arrays through their tables.
  Tower<T> ref_own = own, ref_shared = shared;
  std::vector<Tower<T>> ref_aux = aux;
  kernels::RouterRule rule;
  rule.form = form;
  rule.gamma = 1.5;
  rule.num_aux = num_aux;
  const double rho = 0.9;

  std::vector<kernels::RouterProductSegment<T>> product_segments;
  std::vector<kernels::RouterApplySegment<T>> apply_segments;
  for (std::size_t p = 0; p < kSizes.size(); ++p) {
    const bool routed = !first_layer_only || p < 2;
    kernels::RouterApplySegment<T> apply;
    apply.own = arrays_of(own, p);
    apply.shared = arrays_of(shared, p);
    for (int k = 0; k < num_aux; ++k) apply.aux[k] = arrays_of(aux[k], p);
    apply.n = static_cast<std::int64_t>(kSizes[p]);
    apply.routed = routed;
    apply_segments.push_back(apply);
    if (!routed) continue;
    kernels::RouterProductSegment<T> product;
    product.own = apply.own.gradients;
    product.shared = apply.shared.gradients;
    for (int k = 0; k < num_aux; ++k) product.aux[k] = apply.aux[k].gradients;
    product.n = apply.n;
    product_segments.push_back(product);
  }
  const auto product_table =
      kernels::make_router_product_table<T>(Device::cpu(), num_aux, product_segments);
  const auto apply_table =
      kernels::make_router_apply_table<T>(Device::cpu(), num_aux, apply_segments);
  kernels::RouterWorkspace workspace(Device::cpu());
  Reference reference;
  std::int64_t cases[4] = {};
  const Context cpu = Context::cpu();
  for (std::int64_t step = 1; step <= 3; ++step) {
    INFO("step " << step);
    fresh_gradients(random, own, shared, aux);
    for (std::size_t p = 0; p < kSizes.size(); ++p) {  // the same gradients for the reference
      ref_own.gradients[p] = own.gradients[p];
      ref_shared.gradients[p] = shared.gradients[p];
      for (int k = 0; k < num_aux; ++k) ref_aux[k].gradients[p] = aux[k].gradients[p];
    }
    const kernels::UpdateRule update =
        update_kind != nullptr ? rule_of(*update_kind, step) : kernels::UpdateRule{};
    const kernels::UpdateRule* update_pointer = update_kind != nullptr ? &update : nullptr;
    unfused_step(rule, first_layer_only, update_pointer, step, rho, ref_own, ref_shared, ref_aux,
                 reference);

    kernels::router_products<T>(cpu, product_table, num_aux, workspace);
    kernels::router_coefficients(cpu, rule, workspace);
    // With an update the gradients stay as they came; without, the routed ones are written back.
    kernels::router_apply<T>(cpu, apply_table, num_aux, update_pointer,
                             /*write_gradients=*/update_pointer == nullptr, workspace);
    kernels::router_update_mixing(cpu, rho, workspace);

    const kernels::RouterState state = workspace.read_state();
    for (int p = 0; p < kernels::kRouterMaxProducts; ++p) {
      INFO("product " << p);
      CHECK(state.products[p] == reference.products[p]);
    }
    const auto& c = state.coefficients;
    const auto& e = reference.coefficients;
    CHECK(c.num_aux == num_aux);
    CHECK(c.own_from_shared == e.own_from_shared);
    CHECK(c.shared_from_shared == e.shared_from_shared);
    for (int k = 0; k < num_aux; ++k) {
      CHECK(c.own_from_aux[k] == e.own_from_aux[k]);
      CHECK(c.aux_from_own[k] == e.aux_from_own[k]);
      CHECK(c.sign_case[k] == e.sign_case[k]);
      ++cases[e.sign_case[k]];
    }
    for (int s = 0; s < 4; ++s) CHECK(state.case_counts[s] == cases[s]);
    CHECK(state.final_own_norm2 == reference.final_own_norm2);
    CHECK(state.final_shared_norm2 == reference.final_shared_norm2);
    CHECK(state.sigma_own == reference.sigma_own);
    CHECK(state.sigma_shared == reference.sigma_shared);
    CHECK(state.mu_own == reference.mu_own);
    CHECK(state.mu_shared == reference.mu_shared);
    const bool gradients_written = update_pointer == nullptr;
    check_towers_equal(own, ref_own, gradients_written);
    check_towers_equal(shared, ref_shared, gradients_written);
    for (int k = 0; k < num_aux; ++k) check_towers_equal(aux[k], ref_aux[k], gradients_written);
  }
  for (int s = 0; s < 4; ++s) seen_cases[s] += cases[s];
}

const char* form_name(RouterRuleForm form) {
  return form == RouterRuleForm::kPaper    ? "paper"
         : form == RouterRuleForm::kPaired ? "paired"
                                           : "symmetric_heads";
}

template <typename T>
void check_every_configuration() {
  std::uint32_t seed = 100;
  std::int64_t seen_cases[4] = {};
  for (const RouterRuleForm form :
       {RouterRuleForm::kPaper, RouterRuleForm::kPaired, RouterRuleForm::kSymmetricHeads}) {
    for (const bool first_layer_only : {false, true}) {
      for (const int num_aux : {2, 4}) {
        const UpdateKind kinds[] = {UpdateKind::kSgd, UpdateKind::kAdam, UpdateKind::kAdagrad};
        for (const UpdateKind& kind : kinds) {
          INFO(form_name(form) << (first_layer_only ? ", first layer" : ", all")
                               << ", K = " << num_aux << ", rule " << static_cast<int>(kind)
                               << ", seed " << seed);
          check_fused_matches_unfused<T>(form, first_layer_only, num_aux, &kind, ++seed,
                                         seen_cases);
        }
        INFO(form_name(form) << (first_layer_only ? ", first layer" : ", all")
                             << ", K = " << num_aux << ", no update, seed " << seed);
        check_fused_matches_unfused<T>(form, first_layer_only, num_aux, nullptr, ++seed,
                                       seen_cases);
      }
    }
  }
  for (int s = 0; s < 4; ++s) {
    INFO("sign case " << s);
    CHECK(seen_cases[s] > 0);  // the inputs reach every row of the sign table
  }
}

}  // namespace

TEST_CASE("fused router passes give the bits of the unfused path (float)", "[router][fused]") {
  check_every_configuration<float>();
}

TEST_CASE("fused router passes give the bits of the unfused path (double)", "[router][fused]") {
  check_every_configuration<double>();
}

TEST_CASE("router products on inputs with an exact result", "[router][fused]") {
  // g1' = (1, 2, 3), g1'' = (1, 1, 1), g_0 = (-1, 0, 2), g_1 = (4, 4, 4): small integers, exact.
  std::vector<float> own{1, 2, 3}, shared{1, 1, 1}, aux0{-1, 0, 2}, aux1{4, 4, 4};
  kernels::RouterProductSegment<float> segment;
  segment.own = own.data();
  segment.shared = shared.data();
  segment.aux[0] = aux0.data();
  segment.aux[1] = aux1.data();
  segment.n = 3;
  const auto table = kernels::make_router_product_table<float>(Device::cpu(), 2, {segment});
  kernels::RouterWorkspace workspace;
  kernels::router_products<float>(Context::cpu(), table, 2, workspace);
  const kernels::RouterState state = workspace.read_state();
  CHECK(state.products[kernels::kProductOwnNorm2] == 14);
  CHECK(state.products[kernels::kProductSharedNorm2] == 3);
  CHECK(state.products[kernels::kProductOwnDotShared] == 6);
  CHECK(state.products[kernels::kProductOwnSum] == 6);
  CHECK(state.products[kernels::product_aux_norm2(0)] == 5);
  CHECK(state.products[kernels::product_own_dot_aux(0)] == 5);
  CHECK(state.products[kernels::product_aux_sum(0)] == 1);
  CHECK(state.products[kernels::product_aux_norm2(1)] == 48);
  CHECK(state.products[kernels::product_own_dot_aux(1)] == 24);
  CHECK(state.products[kernels::product_aux_sum(1)] == 12);
  CHECK(state.products[kernels::product_aux_norm2(2)] == 0);  // beyond num_aux: zero
}

TEST_CASE("router passes refuse more auxiliary towers than they hold", "[router][fused]") {
  const int too_many = kernels::kRouterMaxAuxiliaryTowers + 1;
  CHECK_THROWS_AS(kernels::make_router_product_table<float>(Device::cpu(), too_many, {}),
                  kernels::NotSupportedError);
  CHECK_THROWS_WITH(kernels::make_router_apply_table<float>(Device::cpu(), too_many, {}),
                    Catch::Contains("auxiliary towers") && Catch::Contains("17"));
  kernels::RouterWorkspace workspace;
  kernels::RouterRule rule;
  rule.num_aux = too_many;
  CHECK_THROWS_AS(kernels::router_coefficients(Context::cpu(), rule, workspace),
                  kernels::NotSupportedError);
  rule.num_aux = 1;
  rule.gamma = 0;
  CHECK_THROWS_WITH(kernels::router_coefficients(Context::cpu(), rule, workspace),
                    Catch::Contains("gamma"));
}

TEST_CASE("router apply refuses an update without the rule's state", "[router][fused]") {
  std::vector<float> w(3, 1.f), g(3, 1.f), a(3, 0.f);
  kernels::RouterApplySegment<float> segment;
  segment.own = {w.data(), g.data(), a.data(), nullptr};
  segment.shared = {w.data(), g.data(), a.data(), nullptr};
  segment.aux[0] = {w.data(), g.data(), a.data(), nullptr};
  segment.n = 3;
  const auto table = kernels::make_router_apply_table<float>(Device::cpu(), 1, {segment});
  kernels::RouterWorkspace workspace;
  const kernels::UpdateRule adam = rule_of(UpdateKind::kAdam, 1);
  CHECK_THROWS_WITH(kernels::router_apply<float>(Context::cpu(), table, 1, &adam, false, workspace),
                    Catch::Contains("second moment") && Catch::Contains("position 0"));
}

TEST_CASE("router passes write nothing while the skip count is non-zero", "[router][fused]") {
  std::vector<float> weights{0.5f, -0.25f, 1.f}, own{1, 2, 3}, shared{1, -1, 1}, aux{-1, 0, 2};
  std::vector<float> first(3, 0.1f), second(3, 0.01f);
  // Each tower its own copies of the weights and state, so that any write shows.
  std::vector<std::vector<float>> arrays(9);
  for (int t = 0; t < 3; ++t) {
    arrays[3 * t] = weights;
    arrays[3 * t + 1] = first;
    arrays[3 * t + 2] = second;
  }
  const std::vector<std::vector<float>> arrays_before = arrays;
  const std::vector<std::vector<float>> gradients_before{own, shared, aux};
  kernels::RouterProductSegment<float> product;
  product.own = own.data();
  product.shared = shared.data();
  product.aux[0] = aux.data();
  product.n = 3;
  kernels::RouterApplySegment<float> apply;
  apply.own = {arrays[0].data(), own.data(), arrays[1].data(), arrays[2].data()};
  apply.shared = {arrays[3].data(), shared.data(), arrays[4].data(), arrays[5].data()};
  apply.aux[0] = {arrays[6].data(), aux.data(), arrays[7].data(), arrays[8].data()};
  apply.n = 3;
  apply.routed = 1;
  const auto products = kernels::make_router_product_table<float>(Device::cpu(), 1, {product});
  const auto applies = kernels::make_router_apply_table<float>(Device::cpu(), 1, {apply});
  kernels::RouterWorkspace workspace;
  kernels::RouterState start;
  start.sigma_own = 0.3;
  start.sigma_shared = 0.2;
  start.mu_own = 0.7;
  start.mu_shared = 0.3;
  start.final_own_norm2 = 11;
  start.final_shared_norm2 = 13;
  start.case_counts[2] = 5;
  workspace.write_state(start);
  kernels::RouterRule rule;
  const kernels::UpdateRule adam = rule_of(UpdateKind::kAdam, 2);
  std::int64_t skip = 3;
  kernels::router_products<float>(Context::cpu(), products, 1, workspace);
  kernels::router_coefficients(Context::cpu(), rule, workspace, &skip);
  kernels::router_apply<float>(Context::cpu(), applies, 1, &adam, /*write_gradients=*/true,
                               workspace, &skip);
  kernels::router_update_mixing(Context::cpu(), 0.9, workspace, &skip);
  const kernels::RouterState after = workspace.read_state();
  CHECK(after.products[kernels::kProductOwnNorm2] == 14);  // the products pass takes no skip
  CHECK(after.coefficients.own_from_shared == 0);
  CHECK(after.coefficients.xi2 == 0);
  CHECK(after.final_own_norm2 == start.final_own_norm2);
  CHECK(after.final_shared_norm2 == start.final_shared_norm2);
  CHECK(after.sigma_own == start.sigma_own);
  CHECK(after.sigma_shared == start.sigma_shared);
  CHECK(after.mu_own == start.mu_own);
  CHECK(after.mu_shared == start.mu_shared);
  for (int c = 0; c < 4; ++c) CHECK(after.case_counts[c] == start.case_counts[c]);
  CHECK(arrays == arrays_before);
  CHECK(std::vector<std::vector<float>>{own, shared, aux} == gradients_before);
  // With the count back at zero the same passes do their work.
  skip = 0;
  kernels::router_coefficients(Context::cpu(), rule, workspace, &skip);
  kernels::router_apply<float>(Context::cpu(), applies, 1, &adam, true, workspace, &skip);
  kernels::router_update_mixing(Context::cpu(), 0.9, workspace, &skip);
  const kernels::RouterState done = workspace.read_state();
  CHECK(done.case_counts[0] + done.case_counts[1] + done.case_counts[2] + done.case_counts[3] ==
        start.case_counts[2] + 1);
  CHECK(done.coefficients.xi2 != 0);  // <g1', g1''> = 2
  CHECK(done.sigma_own != start.sigma_own);
  CHECK(arrays[0] != arrays_before[0]);
}
