// CUDA twins of the fused DRGrad router passes and of the multi-tensor optimizer update against
// their CPU twins, on fresh random towers of awkward sizes (1, not multiples of the block, one
// larger than a grid's worth of threads), every router form, both scopes, 1 to 16 auxiliary
// towers (every kernel capacity), every update rule; the products also on inputs with an exact
// result and for repeating bit for bit; the skip count, of the multi-tensor update and of every
// router pass that takes one.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/multitask/drgrad_router.h"
#include "kernels/optimizer/optimizer.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace {

namespace kernels = drgrad::kernels;
using drgrad::gpu_test::compare_close;
using drgrad::gpu_test::DeviceBuffer;
using drgrad::gpu_test::random_floats;
using kernels::Context;
using kernels::Device;
using kernels::RouterRuleForm;
using kernels::UpdateKind;

// The first two positions play the first layer. 300000 elements exceed the 1024 x 256 threads of
// the router's grid, so threads loop.
const std::vector<std::size_t> kSizes{37, 1, 300000, 255, 257, 4097};

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

// A tower on the host and its copy on the device.
struct Tower {
  std::vector<std::vector<float>> weights, gradients, state_a, state_b;
  std::vector<DeviceBuffer<float>> device_weights, device_gradients, device_state_a, device_state_b;

  explicit Tower(std::mt19937& random) {
    for (const std::size_t n : kSizes) {
      weights.push_back(random_floats(random, n, -1.f, 1.f));
      gradients.push_back(random_floats(random, n, -1.f, 1.f));
      state_a.push_back(random_floats(random, n, 0.f, 0.5f));
      state_b.push_back(random_floats(random, n, 0.f, 0.01f));
      device_weights.emplace_back(weights.back());
      device_gradients.emplace_back(gradients.back());
      device_state_a.emplace_back(state_a.back());
      device_state_b.emplace_back(state_b.back());
    }
  }
  // The gradients lean on `leader`'s by `lean`, so that the sign cases vary.
  void follow(const Tower& leader, float lean) {
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      for (std::size_t i = 0; i < kSizes[p]; ++i) gradients[p][i] += lean * leader.gradients[p][i];
      device_gradients[p].upload(gradients[p]);
    }
  }
  kernels::RouterTowerArrays<float> host_arrays(std::size_t p) {
    return {weights[p].data(), gradients[p].data(), state_a[p].data(), state_b[p].data()};
  }
  kernels::RouterTowerArrays<float> device_arrays(std::size_t p) {
    return {device_weights[p].data(), device_gradients[p].data(), device_state_a[p].data(),
            device_state_b[p].data()};
  }
  void check_close_to_host(bool gradients_written) const {
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      const auto w = compare_close(device_weights[p].download(), weights[p], 1e-5, 1e-6);
      const auto a = compare_close(device_state_a[p].download(), state_a[p], 1e-5, 1e-6);
      const auto b = compare_close(device_state_b[p].download(), state_b[p], 1e-5, 1e-9);
      const auto g = compare_close(device_gradients[p].download(), gradients[p], 1e-5, 1e-6);
      INFO("position " << p << ": weights " << w << "; state a " << a << "; state b " << b
                       << "; gradients " << g);
      CHECK(w.mismatches == 0);
      CHECK(a.mismatches == 0);
      CHECK(b.mismatches == 0);
      if (gradients_written) CHECK(g.mismatches == 0);
    }
  }
};

struct Tables {
  kernels::RouterProductTable<float> products;
  kernels::RouterApplyTable<float> applies;
};

Tables tables_for(Device device, bool first_layer_only, Tower& own, Tower& shared,
                  std::vector<Tower>& aux) {
  const bool on_device = device.is_cuda();
  const int num_aux = static_cast<int>(aux.size());
  std::vector<kernels::RouterProductSegment<float>> products;
  std::vector<kernels::RouterApplySegment<float>> applies;
  for (std::size_t p = 0; p < kSizes.size(); ++p) {
    kernels::RouterApplySegment<float> apply;
    apply.own = on_device ? own.device_arrays(p) : own.host_arrays(p);
    apply.shared = on_device ? shared.device_arrays(p) : shared.host_arrays(p);
    for (int k = 0; k < num_aux; ++k) {
      apply.aux[k] = on_device ? aux[k].device_arrays(p) : aux[k].host_arrays(p);
    }
    apply.n = static_cast<std::int64_t>(kSizes[p]);
    apply.routed = !first_layer_only || p < 2;
    applies.push_back(apply);
    if (!apply.routed) continue;
    kernels::RouterProductSegment<float> product;
    product.own = apply.own.gradients;
    product.shared = apply.shared.gradients;
    for (int k = 0; k < num_aux; ++k) product.aux[k] = apply.aux[k].gradients;
    product.n = apply.n;
    products.push_back(product);
  }
  return {kernels::make_router_product_table<float>(device, num_aux, std::move(products)),
          kernels::make_router_apply_table<float>(device, num_aux, std::move(applies))};
}

void check_close(double got, double expected, double relative, const char* what) {
  INFO(what << ": CUDA " << got << ", CPU " << expected);
  CHECK(std::abs(got - expected) <= relative * std::abs(expected) + 1e-12);
}

void run_router_case(std::mt19937& random, RouterRuleForm form, bool first_layer_only, int num_aux,
                     const UpdateKind* update_kind) {
  Tower own(random), shared(random);
  std::vector<Tower> aux;
  std::uniform_real_distribution<float> lean(-1.5f, 1.5f);
  shared.follow(own, lean(random));
  for (int k = 0; k < num_aux; ++k) {
    aux.emplace_back(random);
    aux.back().follow(own, lean(random));
  }
  const Tables host = tables_for(Device::cpu(), first_layer_only, own, shared, aux);
  const Tables device = tables_for(Device::cuda(0), first_layer_only, own, shared, aux);
  kernels::RouterWorkspace host_workspace(Device::cpu());
  kernels::RouterWorkspace device_workspace(Device::cuda(0));
  kernels::RouterRule rule;
  rule.form = form;
  rule.gamma = 1.5;
  rule.num_aux = num_aux;
  const kernels::UpdateRule update =
      update_kind != nullptr ? rule_of(*update_kind, 3) : kernels::UpdateRule{};
  const kernels::UpdateRule* update_pointer = update_kind != nullptr ? &update : nullptr;
  const auto ctx = drgrad::gpu_test::cuda_context();
  for (const bool on_device : {false, true}) {
    const Context context = on_device ? ctx : Context::cpu();
    const Tables& tables = on_device ? device : host;
    kernels::RouterWorkspace& workspace = on_device ? device_workspace : host_workspace;
    kernels::router_products<float>(context, tables.products, num_aux, workspace);
    kernels::router_coefficients(context, rule, workspace);
    kernels::router_apply<float>(context, tables.applies, num_aux, update_pointer,
                                 update_pointer == nullptr, workspace);
    kernels::router_update_mixing(context, 0.9, workspace);
  }
  const kernels::RouterState got = device_workspace.read_state();
  const kernels::RouterState expected = host_workspace.read_state();
  for (int p = 0; p < kernels::router_product_count(num_aux); ++p) {
    INFO("product " << p);
    check_close(got.products[p], expected.products[p], 1e-10, "product");
  }
  check_close(got.coefficients.own_from_shared, expected.coefficients.own_from_shared, 1e-9,
              "own_from_shared");
  check_close(got.coefficients.shared_from_shared, expected.coefficients.shared_from_shared, 1e-9,
              "shared_from_shared");
  for (int k = 0; k < num_aux; ++k) {
    check_close(got.coefficients.own_from_aux[k], expected.coefficients.own_from_aux[k], 1e-9,
                "own_from_aux");
    check_close(got.coefficients.aux_from_own[k], expected.coefficients.aux_from_own[k], 1e-9,
                "aux_from_own");
    CHECK(got.coefficients.sign_case[k] == expected.coefficients.sign_case[k]);
  }
  for (int s = 0; s < 4; ++s) CHECK(got.case_counts[s] == expected.case_counts[s]);
  check_close(got.final_own_norm2, expected.final_own_norm2, 1e-6, "final_own_norm2");
  check_close(got.final_shared_norm2, expected.final_shared_norm2, 1e-6, "final_shared_norm2");
  check_close(got.sigma_own, expected.sigma_own, 1e-6, "sigma_own");
  check_close(got.mu_own, expected.mu_own, 1e-6, "mu_own");
  own.check_close_to_host(update_pointer == nullptr);
  shared.check_close_to_host(update_pointer == nullptr);
  for (const Tower& tower : aux) tower.check_close_to_host(update_pointer == nullptr);
}

}  // namespace

TEST_CASE("CUDA router passes match the CPU twin", "[gpu][router]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  for (const RouterRuleForm form :
       {RouterRuleForm::kPaper, RouterRuleForm::kPaired, RouterRuleForm::kSymmetricHeads}) {
    for (const bool first_layer_only : {false, true}) {
      for (const int num_aux : {1, 3, 5, 16}) {
        const UpdateKind kinds[] = {UpdateKind::kSgd, UpdateKind::kAdam, UpdateKind::kAdagrad};
        const UpdateKind& kind = kinds[static_cast<std::size_t>(num_aux) % 3];
        INFO("form " << static_cast<int>(form) << (first_layer_only ? ", first layer" : ", all")
                     << ", K = " << num_aux << ", rule " << static_cast<int>(kind));
        run_router_case(random, form, first_layer_only, num_aux, &kind);
      }
      INFO("form " << static_cast<int>(form) << ", no update (gradients written back)");
      run_router_case(random, form, first_layer_only, 2, nullptr);
    }
  }
}

TEST_CASE("CUDA router products: exact inputs, and the same bits on every run", "[gpu][router]") {
  DRGRAD_REQUIRE_GPU();
  const auto ctx = drgrad::gpu_test::cuda_context();
  // Small integers: every product and partial sum is exact in double.
  const std::size_t n = 100003;
  std::vector<float> own(n), shared(n), aux(n);
  double own_norm2 = 0, own_dot_aux = 0, aux_sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    own[i] = float(int(i % 7) - 3);
    shared[i] = 1.f;
    aux[i] = float(int(i % 5) - 2);
    own_norm2 += double(own[i]) * own[i];
    own_dot_aux += double(own[i]) * aux[i];
    aux_sum += aux[i];
  }
  DeviceBuffer<float> device_own(own), device_shared(shared), device_aux(aux);
  kernels::RouterProductSegment<float> segment;
  segment.own = device_own.data();
  segment.shared = device_shared.data();
  segment.aux[0] = device_aux.data();
  segment.n = static_cast<std::int64_t>(n);
  const auto table = kernels::make_router_product_table<float>(Device::cuda(0), 1, {segment});
  kernels::RouterWorkspace workspace(Device::cuda(0));
  kernels::router_products<float>(ctx, table, 1, workspace);
  const kernels::RouterState first = workspace.read_state();
  CHECK(first.products[kernels::kProductOwnNorm2] == own_norm2);
  CHECK(first.products[kernels::kProductSharedNorm2] == double(n));
  CHECK(first.products[kernels::product_own_dot_aux(0)] == own_dot_aux);
  CHECK(first.products[kernels::product_aux_sum(0)] == aux_sum);
  // Random inputs: two runs give the same bits.
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  device_own.upload(random_floats(random, n, -1.f, 1.f));
  device_aux.upload(random_floats(random, n, -1.f, 1.f));
  kernels::router_products<float>(ctx, table, 1, workspace);
  const kernels::RouterState once = workspace.read_state();
  kernels::router_products<float>(ctx, table, 1, workspace);
  const kernels::RouterState again = workspace.read_state();
  for (int p = 0; p < kernels::router_product_count(1); ++p) {
    CHECK(once.products[p] == again.products[p]);
  }
}

TEST_CASE("CUDA multi-tensor update matches the CPU twin, and the skip flag holds it",
          "[gpu][optimizer]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  const auto ctx = drgrad::gpu_test::cuda_context();
  for (const UpdateKind kind : {UpdateKind::kSgd, UpdateKind::kAdam, UpdateKind::kAdagrad}) {
    INFO("rule " << static_cast<int>(kind));
    Tower host(random);  // weights, gradients and states, on both sides
    std::vector<kernels::DenseUpdateSegment<float>> host_segments, device_segments;
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      const auto h = host.host_arrays(p);
      const auto d = host.device_arrays(p);
      const auto n = static_cast<std::int64_t>(kSizes[p]);
      host_segments.push_back({h.weights, h.gradients, h.state_a, h.state_b, n, 0});
      device_segments.push_back({d.weights, d.gradients, d.state_a, d.state_b, n, 0});
    }
    const auto host_table = kernels::make_dense_update_table<float>(Device::cpu(), host_segments);
    const auto device_table =
        kernels::make_dense_update_table<float>(Device::cuda(0), device_segments);
    DeviceBuffer<std::int64_t> skip(std::vector<std::int64_t>{1});
    kernels::fused_dense_update<float>(ctx, rule_of(kind, 1), device_table, skip.data());
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      CHECK(host.device_weights[p].download() == host.weights[p]);  // skipped: untouched
    }
    skip.upload({0});
    for (std::int64_t step = 1; step <= 3; ++step) {
      kernels::fused_dense_update<float>(Context::cpu(), rule_of(kind, step), host_table);
      kernels::fused_dense_update<float>(ctx, rule_of(kind, step), device_table, skip.data());
    }
    host.check_close_to_host(false);
  }
}

TEST_CASE("CUDA router passes write nothing while the skip count is non-zero", "[gpu][router]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  const auto ctx = drgrad::gpu_test::cuda_context();
  Tower own(random), shared(random);
  std::vector<Tower> aux;
  for (int k = 0; k < 2; ++k) {
    aux.emplace_back(random);
    aux.back().follow(own, k == 0 ? 0.5f : -0.75f);
  }
  shared.follow(own, 0.25f);
  const Tables device = tables_for(Device::cuda(0), false, own, shared, aux);
  kernels::RouterWorkspace workspace(Device::cuda(0));
  kernels::RouterState start;  // a state the passes would visibly change
  start.sigma_own = 0.3;
  start.sigma_shared = 0.2;
  start.mu_own = 0.7;
  start.mu_shared = 0.3;
  start.final_own_norm2 = 11;
  start.final_shared_norm2 = 13;
  start.case_counts[2] = 5;
  workspace.write_state(start);
  kernels::RouterRule rule;
  rule.num_aux = 2;
  const kernels::UpdateRule update = rule_of(UpdateKind::kAdam, 2);
  DeviceBuffer<std::int64_t> skip(std::vector<std::int64_t>{3});
  kernels::router_products<float>(ctx, device.products, 2, workspace);  // takes no skip
  const kernels::RouterState products_only = workspace.read_state();
  kernels::router_coefficients(ctx, rule, workspace, skip.data());
  kernels::router_apply<float>(ctx, device.applies, 2, &update, /*write_gradients=*/true, workspace,
                               skip.data());
  kernels::router_update_mixing(ctx, 0.9, workspace, skip.data());
  const kernels::RouterState after = workspace.read_state();
  CHECK(after.coefficients.own_from_shared == products_only.coefficients.own_from_shared);
  CHECK(after.coefficients.xi2 == products_only.coefficients.xi2);
  CHECK(after.final_own_norm2 == start.final_own_norm2);
  CHECK(after.final_shared_norm2 == start.final_shared_norm2);
  CHECK(after.sigma_own == start.sigma_own);
  CHECK(after.sigma_shared == start.sigma_shared);
  CHECK(after.mu_own == start.mu_own);
  CHECK(after.mu_shared == start.mu_shared);
  for (int c = 0; c < 4; ++c) CHECK(after.case_counts[c] == start.case_counts[c]);
  for (Tower* tower : {&own, &shared, &aux[0], &aux[1]}) {
    for (std::size_t p = 0; p < kSizes.size(); ++p) {
      INFO("position " << p);
      CHECK(tower->device_weights[p].download() == tower->weights[p]);
      CHECK(tower->device_gradients[p].download() == tower->gradients[p]);
      CHECK(tower->device_state_a[p].download() == tower->state_a[p]);
      CHECK(tower->device_state_b[p].download() == tower->state_b[p]);
    }
  }
  // The same passes with the count back at zero do their work.
  skip.upload({0});
  kernels::router_coefficients(ctx, rule, workspace, skip.data());
  kernels::router_apply<float>(ctx, device.applies, 2, &update, true, workspace, skip.data());
  kernels::router_update_mixing(ctx, 0.9, workspace, skip.data());
  const kernels::RouterState done = workspace.read_state();
  CHECK(done.case_counts[0] + done.case_counts[1] + done.case_counts[2] + done.case_counts[3] ==
        start.case_counts[2] + 2);
  CHECK(done.sigma_own != start.sigma_own);
  CHECK(own.device_weights[2].download() != own.weights[2]);
}
