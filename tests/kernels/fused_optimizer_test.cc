// The multi-tensor dense update against one single-array step per parameter (same bits on the
// CPU, since both run the shared per-element rules), its skip flag, and its argument checks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/optimizer/optimizer.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::Context;
using kernels::Device;
using kernels::UpdateKind;

template <typename T>
std::vector<T> random_values(std::size_t n, std::mt19937& random, double low, double high) {
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<T> values(n);
  for (T& value : values) value = static_cast<T>(distribution(random));
  return values;
}

template <typename T>
struct Parameter {
  std::vector<T> weights, gradients, state_a, state_b;
};

template <typename T>
std::vector<Parameter<T>> random_group(std::mt19937& random,
                                       const std::vector<std::size_t>& sizes) {
  std::vector<Parameter<T>> group;
  for (const std::size_t n : sizes) {
    group.push_back({random_values<T>(n, random, -1, 1), random_values<T>(n, random, -2, 2),
                     random_values<T>(n, random, 0, 0.5), random_values<T>(n, random, 0, 0.01)});
  }
  return group;
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

// The reference: one single-array step per parameter.
template <typename T>
void step_each(const kernels::UpdateRule& rule, std::int64_t step,
               std::vector<Parameter<T>>& group) {
  for (auto& p : group) {
    const auto n = static_cast<std::int64_t>(p.weights.size());
    switch (rule.kind) {
      case UpdateKind::kSgd:
        kernels::sgd_update<T>(Context::cpu(), rule.sgd, p.weights.data(), p.gradients.data(),
                               p.state_a.data(), n);
        break;
      case UpdateKind::kAdam:
        kernels::adam_update<T>(Context::cpu(), rule.adam, step, p.weights.data(),
                                p.gradients.data(), p.state_a.data(), p.state_b.data(), n);
        break;
      case UpdateKind::kAdagrad:
        kernels::adagrad_update<T>(Context::cpu(), rule.adagrad, p.weights.data(),
                                   p.gradients.data(), p.state_a.data(), n);
        break;
    }
  }
}

template <typename T>
kernels::DenseUpdateTable<T> table_of(std::vector<Parameter<T>>& group) {
  std::vector<kernels::DenseUpdateSegment<T>> segments;
  for (auto& p : group) {
    segments.push_back({p.weights.data(), p.gradients.data(), p.state_a.data(), p.state_b.data(),
                        static_cast<std::int64_t>(p.weights.size()), 0});
  }
  return kernels::make_dense_update_table<T>(Device::cpu(), std::move(segments));
}

template <typename T>
void check_fused_matches_each() {
  std::mt19937 random(71);
  const std::vector<std::size_t> sizes{1, 0, 257, 64, 1000, 3};
  for (const UpdateKind kind : {UpdateKind::kSgd, UpdateKind::kAdam, UpdateKind::kAdagrad}) {
    INFO("rule " << static_cast<int>(kind));
    auto fused = random_group<T>(random, sizes);
    auto reference = fused;
    const auto table = table_of(fused);
    for (std::int64_t step = 1; step <= 3; ++step) {
      for (std::size_t i = 0; i < fused.size(); ++i) {
        // In place: the table points into these arrays.
        const auto gradients = random_values<T>(sizes[i], random, -2, 2);
        std::copy(gradients.begin(), gradients.end(), fused[i].gradients.begin());
        reference[i].gradients = gradients;
      }
      const kernels::UpdateRule rule = rule_of(kind, step);
      kernels::fused_dense_update<T>(Context::cpu(), rule, table);
      step_each(rule, step, reference);
    }
    for (std::size_t i = 0; i < fused.size(); ++i) {
      CHECK(fused[i].weights == reference[i].weights);
      CHECK(fused[i].state_a == reference[i].state_a);
      if (kind == UpdateKind::kAdam) CHECK(fused[i].state_b == reference[i].state_b);
    }
  }
}

}  // namespace

TEST_CASE("fused dense update gives the bits of one step per parameter", "[optimizer][fused]") {
  check_fused_matches_each<float>();
  check_fused_matches_each<double>();
}

TEST_CASE("fused dense update: table offsets and the skip flag", "[optimizer][fused]") {
  std::mt19937 random(3);
  auto group = random_group<float>(random, {5, 0, 7});
  const auto table = table_of(group);
  REQUIRE(table.size() == 3);
  CHECK(table.host()[0].offset == 0);
  CHECK(table.host()[1].offset == 5);
  CHECK(table.host()[2].offset == 5);
  CHECK(table.data() == table.host().data());  // on the CPU the kernel reads the host copy
  const auto before = group;
  const std::int64_t skip = 1;
  kernels::fused_dense_update<float>(Context::cpu(), rule_of(UpdateKind::kAdam, 1), table, &skip);
  for (std::size_t i = 0; i < group.size(); ++i) {
    CHECK(group[i].weights == before[i].weights);
    CHECK(group[i].state_a == before[i].state_a);
    CHECK(group[i].state_b == before[i].state_b);
  }
  const std::int64_t go = 0;
  kernels::fused_dense_update<float>(Context::cpu(), rule_of(UpdateKind::kAdam, 1), table, &go);
  CHECK(group[0].weights != before[0].weights);
}

TEST_CASE("fused dense update refuses missing state and bad options", "[optimizer][fused]") {
  std::vector<float> w(4, 1.f), g(4, 1.f), a(4, 0.f);
  auto table = kernels::make_dense_update_table<float>(
      Device::cpu(), {{w.data(), g.data(), a.data(), nullptr, 4, 0}});
  CHECK_THROWS_WITH(
      kernels::fused_dense_update<float>(Context::cpu(), rule_of(UpdateKind::kAdam, 1), table),
      Catch::Contains("second moment"));
  kernels::UpdateRule bad = rule_of(UpdateKind::kSgd, 1);
  bad.sgd.momentum = 1.5f;
  CHECK_THROWS_WITH(kernels::fused_dense_update<float>(Context::cpu(), bad, table),
                    Catch::Contains("momentum"));
  CHECK_THROWS_AS(kernels::make_dense_update_table<float>(
                      Device::cpu(), {{w.data(), g.data(), a.data(), nullptr, -1, 0}}),
                  std::invalid_argument);
}
