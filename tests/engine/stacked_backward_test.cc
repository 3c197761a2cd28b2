// Stacked (per-task) backward passes against K separate ordinary backward passes, in double
// precision: for every layer, one backward_stacked with K = 3 upstream gradients must give each
// task's parameter gradients and input gradient as the ordinary backward gives them one by one.
// Then GradientSurgery over such per-task gradients (dense and row-sparse parameters together).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "engine/layers/embedding.h"
#include "engine/layers/experts.h"
#include "engine/layers/gate.h"
#include "engine/layers/linear.h"
#include "engine/multitask/gradient_surgery.h"
#include "engine/multitask/task_gradients.h"
#include "kernels/multitask/gradient_surgery.h"
#include "tests/support/gradient_check.h"

using namespace drgrad;
using namespace drgrad::engine;
using drgrad::testing::random_values;

namespace {
constexpr std::int64_t kTasks = 3;

struct Fixture {
  ParameterStore store{DType::kFloat64};
  Random random{11};
  LayerBuilder builder{store, random, kernels::Context::cpu()};

  std::vector<Parameter*> parameters() const {
    std::vector<Parameter*> all;
    for (const auto& parameter : store.all()) all.push_back(parameter.get());
    return all;
  }
};

Tensor host_tensor(Shape shape, const std::vector<double>& values) {
  return Tensor::from_vector<double>(std::move(shape), values);
}

void check_close(const std::vector<double>& expected, const std::vector<double>& actual,
                 const std::string& what, double tolerance = 1e-12) {
  REQUIRE(expected.size() == actual.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO(what << " entry " << i << ": separate " << expected[i] << ", stacked " << actual[i]);
    CHECK(std::abs(expected[i] - actual[i]) <=
          tolerance * std::max({1.0, std::abs(expected[i]), std::abs(actual[i])}));
  }
}

std::vector<double> task_slice(const Tensor& stacked, std::int64_t task) {
  const auto values = stacked.to_vector<double>();
  const std::int64_t block = stacked.numel() / stacked.dim(0);
  return {values.begin() + task * block, values.begin() + (task + 1) * block};
}

// What one ordinary backward pass left behind: every parameter's gradient (and touched rows for
// row-sparse ones) plus the input gradients the caller records.
struct SeparatePass {
  std::vector<std::vector<double>> gradients;
  std::vector<std::vector<std::int64_t>> touched_rows;
  std::vector<std::vector<double>> inputs;
};

// Runs `backward_for_task(k)` after zeroing the store, for each task, and records the result;
// then runs `backward_stacked()` once and compares per task.
void compare_stacked_with_separate(
    Fixture& f, const std::function<std::vector<std::vector<double>>(std::int64_t)>& separate,
    const std::function<std::vector<std::vector<double>>()>& stacked) {
  std::vector<SeparatePass> passes;
  for (std::int64_t k = 0; k < kTasks; ++k) {
    f.store.zero_gradients();
    SeparatePass pass;
    pass.inputs = separate(k);
    for (const auto& parameter : f.store.all()) {
      pass.gradients.push_back(parameter->gradient.defined()
                                   ? parameter->gradient.to_vector<double>()
                                   : std::vector<double>{});
      pass.touched_rows.push_back(parameter->touched_rows);
    }
    passes.push_back(std::move(pass));
  }
  f.store.zero_gradients();
  zero_task_gradients(f.parameters(), kTasks);
  const auto stacked_inputs = stacked();
  for (std::int64_t k = 0; k < kTasks; ++k) {
    for (std::size_t p = 0; p < f.store.all().size(); ++p) {
      const Parameter& parameter = *f.store.all()[p];
      REQUIRE(parameter.task_gradients.defined());
      REQUIRE(parameter.task_gradients.dim(0) == kTasks);
      if (parameter.row_sparse) {
        // Each separate pass touches the same rows (the plan depends on the ids only).
        CHECK(parameter.touched_rows == passes[k].touched_rows[p]);
        REQUIRE(parameter.task_gradients.rank() == 3);
      } else {
        // The ordinary gradient is not touched by the stacked pass.
        for (double value : parameter.gradient.to_vector<double>()) CHECK(value == 0.0);
      }
      check_close(passes[k].gradients[p], task_slice(parameter.task_gradients, k),
                  parameter.name + " task " + std::to_string(k));
    }
    REQUIRE(stacked_inputs.size() == passes[k].inputs.size());
    for (std::size_t i = 0; i < stacked_inputs.size(); ++i) {
      const std::size_t block = stacked_inputs[i].size() / kTasks;
      check_close(
          passes[k].inputs[i],
          {stacked_inputs[i].begin() + k * block, stacked_inputs[i].begin() + (k + 1) * block},
          "input gradient " + std::to_string(i) + " task " + std::to_string(k));
    }
  }
}

std::vector<double> task_part(const std::vector<double>& stacked, std::int64_t task) {
  const std::size_t block = stacked.size() / kTasks;
  return {stacked.begin() + task * block, stacked.begin() + (task + 1) * block};
}
}  // namespace

TEST_CASE("linear stacked backward equals K separate backward passes", "[stacked][layers]") {
  for (const auto activation : {kernels::Activation::kIdentity, kernels::Activation::kRelu,
                                kernels::Activation::kMish, kernels::Activation::kSigmoid}) {
    SECTION(kernels::activation_name(activation)) {
      Fixture f;
      Linear<double> layer(f.builder, "linear", "backbone", 5, 3, activation);
      const auto x = random_values(f.random, 4 * 5);
      const auto upstream = random_values(f.random, kTasks * 4 * 3);
      compare_stacked_with_separate(
          f,
          [&](std::int64_t k) -> std::vector<std::vector<double>> {
            layer.forward(host_tensor({4, 5}, x));
            return {
                layer.backward(host_tensor({4, 3}, task_part(upstream, k))).to_vector<double>()};
          },
          [&]() -> std::vector<std::vector<double>> {
            layer.forward(host_tensor({4, 5}, x));
            return {
                layer.backward_stacked(host_tensor({kTasks, 4, 3}, upstream)).to_vector<double>()};
          });
    }
  }
}

TEST_CASE("MLP stacked backward equals K separate backward passes", "[stacked][layers]") {
  Fixture f;
  Mlp<double> mlp(f.builder, "mlp", "backbone", 6, {5, 4, 2}, kernels::Activation::kMish, false);
  const auto x = random_values(f.random, 3 * 6);
  const auto upstream = random_values(f.random, kTasks * 3 * 2);
  compare_stacked_with_separate(
      f,
      [&](std::int64_t k) -> std::vector<std::vector<double>> {
        mlp.forward(host_tensor({3, 6}, x));
        return {mlp.backward(host_tensor({3, 2}, task_part(upstream, k))).to_vector<double>()};
      },
      [&]() -> std::vector<std::vector<double>> {
        mlp.forward(host_tensor({3, 6}, x));
        return {mlp.backward_stacked(host_tensor({kTasks, 3, 2}, upstream)).to_vector<double>()};
      });
}

TEST_CASE("expert group stacked backward equals K separate backward passes", "[stacked][layers]") {
  Fixture f;
  ExpertGroup<double> experts(f.builder, "experts", "backbone", 3, 4, {5, 2},
                              kernels::Activation::kMish);
  const auto x = random_values(f.random, 6 * 4);
  const auto upstream = random_values(f.random, kTasks * 3 * 6 * 2);
  compare_stacked_with_separate(
      f,
      [&](std::int64_t k) -> std::vector<std::vector<double>> {
        experts.forward(host_tensor({6, 4}, x));
        return {
            experts.backward(host_tensor({3, 6, 2}, task_part(upstream, k))).to_vector<double>()};
      },
      [&]() -> std::vector<std::vector<double>> {
        experts.forward(host_tensor({6, 4}, x));
        return {
            experts.backward_stacked(host_tensor({kTasks, 3, 6, 2}, upstream)).to_vector<double>()};
      });
}

TEST_CASE("single-layer expert group stacked backward", "[stacked][layers]") {
  Fixture f;
  ExpertGroup<double> experts(f.builder, "experts", "backbone", 2, 3, {4},
                              kernels::Activation::kSigmoid);
  const auto x = random_values(f.random, 5 * 3);
  const auto upstream = random_values(f.random, kTasks * 2 * 5 * 4);
  compare_stacked_with_separate(
      f,
      [&](std::int64_t k) -> std::vector<std::vector<double>> {
        experts.forward(host_tensor({5, 3}, x));
        return {
            experts.backward(host_tensor({2, 5, 4}, task_part(upstream, k))).to_vector<double>()};
      },
      [&]() -> std::vector<std::vector<double>> {
        experts.forward(host_tensor({5, 3}, x));
        return {
            experts.backward_stacked(host_tensor({kTasks, 2, 5, 4}, upstream)).to_vector<double>()};
      });
}

TEST_CASE("softmax gate stacked backward equals K separate backward passes", "[stacked][layers]") {
  Fixture f;
  SoftmaxGate<double> gate(f.builder, "gate", "backbone", 4, {0, 2, 3});
  const auto x = random_values(f.random, 5 * 4);
  const auto experts = random_values(f.random, 4 * 5 * 3);
  const auto upstream = random_values(f.random, kTasks * 5 * 3);
  // Non-zero starting values check that d_experts accumulates.
  const auto d_experts_start = random_values(f.random, 4 * 5 * 3);
  compare_stacked_with_separate(
      f,
      [&](std::int64_t k) -> std::vector<std::vector<double>> {
        gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, experts));
        Tensor d_experts = host_tensor({4, 5, 3}, d_experts_start);
        const auto dx = gate.backward(host_tensor({5, 3}, task_part(upstream, k)), d_experts)
                            .to_vector<double>();
        return {dx, d_experts.to_vector<double>()};
      },
      [&]() -> std::vector<std::vector<double>> {
        gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, experts));
        std::vector<double> start;
        for (std::int64_t k = 0; k < kTasks; ++k) {
          start.insert(start.end(), d_experts_start.begin(), d_experts_start.end());
        }
        Tensor d_experts = host_tensor({kTasks, 4, 5, 3}, start);
        const auto dx = gate.backward_stacked(host_tensor({kTasks, 5, 3}, upstream), d_experts)
                            .to_vector<double>();
        return {dx, d_experts.to_vector<double>()};
      });
}

TEST_CASE("feature input stacked backward gives per-task embedding row gradients",
          "[stacked][layers]") {
  for (const auto pooling : {kernels::Pooling::kSum, kernels::Pooling::kMean}) {
    Fixture f;
    FeatureInput<double> input(f.builder, 2,
                               {{"user", 10, 3, pooling, OutOfRange::kError},
                                {"item", 6, 2, pooling, OutOfRange::kError}});
    io::Batch batch;
    batch.size = 4;
    batch.dense = {0.5, -1.0, 2.0, 0.25, -0.5, 1.5, 0.0, 3.0};
    // A repeated id, an empty bag, and ids shared between samples.
    batch.sparse.push_back(io::SparseColumn{{4, 4, 7, 1, 0, 9, 4}, {0, 3, 4, 4, 7}});
    batch.sparse.push_back(io::SparseColumn{{5, 2, 2, 0}, {0, 1, 2, 3, 4}});
    const std::int64_t width = input.out_features();
    const auto upstream = random_values(f.random, kTasks * 4 * width);
    compare_stacked_with_separate(
        f,
        [&](std::int64_t k) -> std::vector<std::vector<double>> {
          input.forward(batch);
          input.backward(host_tensor({4, width}, task_part(upstream, k)));
          return {};
        },
        [&]() -> std::vector<std::vector<double>> {
          input.forward(batch);
          input.backward_stacked(host_tensor({kTasks, 4, width}, upstream));
          return {};
        });
    // Row-sparse layout [tasks, touched rows, dim], and a zero combined gradient until a
    // multi-task strategy writes it.
    const Parameter& user = f.store.get("embeddings/user");
    CHECK(user.task_gradients.shape() == Shape{kTasks, 5, 3});
    CHECK(user.gradient.shape() == Shape{5, 3});
  }
}

TEST_CASE("stacked backward without per-task buffers says what to call", "[stacked][layers]") {
  Fixture f;
  Linear<double> layer(f.builder, "linear", "backbone", 2, 2);
  layer.forward(host_tensor({1, 2}, {1.0, 2.0}));
  CHECK_THROWS_WITH(layer.backward_stacked(host_tensor({2, 1, 2}, {1, 2, 3, 4})),
                    Catch::Contains("linear/weight") && Catch::Contains("zero_task_gradients"));
  zero_task_gradients(f.parameters(), 3);  // a different task count
  CHECK_THROWS_WITH(layer.backward_stacked(host_tensor({2, 1, 2}, {1, 2, 3, 4})),
                    Catch::Contains("[2, 4]"));
  CHECK_THROWS_AS(layer.backward_stacked(host_tensor({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8})),
                  std::invalid_argument);
}

namespace {
// A small shared part: feature input (two embedding slots and two dense features) under a linear
// layer, run forward on a fixed batch; stacked_backward fills every parameter's task_gradients.
struct SharedPart {
  Fixture f;
  FeatureInput<double> input{f.builder,
                             2,
                             {{"user", 10, 3, kernels::Pooling::kSum, OutOfRange::kError},
                              {"item", 6, 2, kernels::Pooling::kMean, OutOfRange::kError}}};
  Linear<double> layer{
      f.builder, "shared", "backbone", input.out_features(), 4, kernels::Activation::kMish};
  io::Batch batch;
  std::vector<double> upstream;

  SharedPart() {
    batch.size = 4;
    batch.dense = {0.5, -1.0, 2.0, 0.25, -0.5, 1.5, 0.0, 3.0};
    batch.sparse.push_back(io::SparseColumn{{4, 4, 7, 1, 0, 9, 4}, {0, 3, 4, 4, 7}});
    batch.sparse.push_back(io::SparseColumn{{5, 2, 2, 0}, {0, 1, 2, 3, 4}});
    upstream = random_values(f.random, kTasks * 4 * 4);
  }
  void stacked_backward() {
    zero_task_gradients(f.parameters(), kTasks);
    layer.forward(input.forward(batch));
    input.backward_stacked(layer.backward_stacked(host_tensor({kTasks, 4, 4}, upstream)));
  }
  // Row k: task k's gradient of every parameter, concatenated in store order.
  std::vector<double> concatenated_task_gradients() const {
    std::vector<std::vector<double>> rows(kTasks);
    for (const auto& parameter : f.store.all()) {
      for (std::int64_t k = 0; k < kTasks; ++k) {
        const auto part = task_slice(parameter->task_gradients, k);
        rows[k].insert(rows[k].end(), part.begin(), part.end());
      }
    }
    std::vector<double> flat;
    for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
    return flat;
  }
  std::vector<double> concatenated_gradients() const {
    std::vector<double> flat;
    for (const auto& parameter : f.store.all()) {
      const auto part = parameter->gradient.to_vector<double>();
      flat.insert(flat.end(), part.begin(), part.end());
    }
    return flat;
  }
};
}  // namespace

TEST_CASE("gradient surgery over a parameter set equals the kernel on the concatenation",
          "[stacked][surgery]") {
  for (const auto method : {SurgeryMethod::kPcgrad, SurgeryMethod::kCagrad}) {
    SECTION(surgery_method_name(method)) {
      SharedPart part;
      part.stacked_backward();
      GradientSurgeryOptions options;
      options.method = method;
      options.pcgrad = {true, 17};
      GradientSurgery surgery(kernels::Context::cpu(), options);
      const auto weights = surgery.apply(part.f.store, {"embeddings", "backbone"});
      REQUIRE(weights.size() == static_cast<std::size_t>(kTasks));
      const auto per_task = part.concatenated_task_gradients();
      const auto n = static_cast<std::int64_t>(per_task.size() / kTasks);
      std::vector<double> expected(static_cast<std::size_t>(n));
      if (method == SurgeryMethod::kPcgrad) {
        kernels::pcgrad<double>(kernels::Context::cpu(), per_task.data(), kTasks, n, options.pcgrad,
                                expected.data());
      } else {
        kernels::cagrad<double>(kernels::Context::cpu(), per_task.data(), kTasks, n, options.cagrad,
                                expected.data());
      }
      // Store order is embeddings (user, item) then backbone (weight, bias): the same order.
      // The Gram matrices differ in the last bits (per-parameter sums against one pass), and the
      // three-task CAGrad weights come from an iterative solver (~1e-10).
      check_close(expected, part.concatenated_gradients(), "combined gradient",
                  method == SurgeryMethod::kPcgrad ? 1e-12 : 1e-11);
      CHECK(surgery.steps() == 1);
      CHECK(surgery.last_gram().size() == static_cast<std::size_t>(kTasks * kTasks));
    }
  }
}

TEST_CASE("CAGrad with c = 0 gives the mean task gradient of the ordinary backward",
          "[stacked][surgery]") {
  SharedPart part;
  // Ordinary backward of the summed upstream: the sum of the task gradients.
  std::vector<double> summed(4 * 4, 0.0);
  for (std::int64_t k = 0; k < kTasks; ++k) {
    for (std::size_t i = 0; i < summed.size(); ++i) summed[i] += part.upstream[k * 16 + i];
  }
  part.f.store.zero_gradients();
  part.layer.forward(part.input.forward(part.batch));
  part.input.backward(part.layer.backward(host_tensor({4, 4}, summed)));
  auto expected = part.concatenated_gradients();
  for (auto& value : expected) value /= kTasks;

  part.stacked_backward();
  GradientSurgeryOptions options;
  options.method = SurgeryMethod::kCagrad;
  options.cagrad.c = 0.0;
  GradientSurgery surgery(kernels::Context::cpu(), options);
  const auto weights = surgery.apply(part.f.parameters());
  for (double w : weights) CHECK(w == Approx(1.0 / kTasks));
  check_close(expected, part.concatenated_gradients(), "mean gradient");
}

TEST_CASE("gradient surgery without per-task gradients says what to call", "[stacked][surgery]") {
  SharedPart part;
  GradientSurgery surgery(kernels::Context::cpu(), {});
  CHECK_THROWS_WITH(surgery.apply(part.f.parameters()),
                    Catch::Contains("embeddings/user") && Catch::Contains("backward_stacked"));
  CHECK_THROWS_WITH(parse_surgery_method("nash"), Catch::Contains("pcgrad or cagrad"));
  CHECK(parse_surgery_method("cagrad") == SurgeryMethod::kCagrad);
}

TEST_CASE("task-only backward equals the stacked backward with the other upstreams zero",
          "[stacked][layers]") {
  Fixture f;
  SoftmaxGate<double> gate(f.builder, "gate", "backbone", 4, {0, 1, 3});
  const auto x = random_values(f.random, 5 * 4);
  const auto experts = random_values(f.random, 4 * 5 * 3);
  const auto upstream = random_values(f.random, 5 * 3);
  const std::int64_t task = 1;
  // Stacked: only task 1 has an upstream.
  std::vector<double> stacked_upstream(kTasks * 5 * 3, 0.0);
  std::copy(upstream.begin(), upstream.end(), stacked_upstream.begin() + task * 5 * 3);
  zero_task_gradients(f.parameters(), kTasks);
  gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, experts));
  Tensor d_experts_stacked = Tensor::zeros({kTasks, 4, 5, 3}, DType::kFloat64);
  const auto dx_stacked =
      gate.backward_stacked(host_tensor({kTasks, 5, 3}, stacked_upstream), d_experts_stacked)
          .to_vector<double>();
  std::vector<std::vector<double>> stacked_gradients;
  for (const auto& parameter : f.store.all()) {
    stacked_gradients.push_back(parameter->task_gradients.to_vector<double>());
  }
  // Task only: the same buffers, filled through backward_task.
  zero_task_gradients(f.parameters(), kTasks);
  gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, experts));
  Tensor d_experts_task = Tensor::zeros({kTasks, 4, 5, 3}, DType::kFloat64);
  Tensor d_experts_slice = d_experts_task.narrow_first(task, 1).reshaped({4, 5, 3});
  const auto dx_task =
      gate.backward_task(task, kTasks, host_tensor({5, 3}, upstream), d_experts_slice)
          .to_vector<double>();
  for (std::size_t p = 0; p < f.store.all().size(); ++p) {
    check_close(stacked_gradients[p], f.store.all()[p]->task_gradients.to_vector<double>(),
                f.store.all()[p]->name);
  }
  check_close(task_part(dx_stacked, task), dx_task, "input gradient");
  for (std::int64_t k = 0; k < kTasks; ++k) {
    if (k != task) {
      for (double value : task_part(dx_stacked, k)) CHECK(value == 0.0);
    }
  }
  check_close(d_experts_stacked.to_vector<double>(), d_experts_task.to_vector<double>(),
              "expert gradients");
  CHECK_THROWS_AS(gate.backward_task(3, kTasks, host_tensor({5, 3}, upstream), d_experts_slice),
                  std::invalid_argument);
}

TEST_CASE("MMoE recipe: task gates with backward_task, experts stacked, equals K separate passes",
          "[stacked][layers]") {
  // The recipe of docs/multitask.md for an MMoE backbone, built from its layers: three experts
  // over the input, one softmax gate per task.
  Fixture f;
  ExpertGroup<double> experts(f.builder, "experts", "backbone", 3, 4, {5, 2},
                              kernels::Activation::kMish);
  std::vector<SoftmaxGate<double>> gates;
  gates.reserve(kTasks);
  for (std::int64_t k = 0; k < kTasks; ++k) {
    gates.emplace_back(f.builder, "gate" + std::to_string(k), "backbone", 4,
                       std::vector<int>{0, 1, 2});
  }
  const auto x = random_values(f.random, 6 * 4);
  const auto upstream = random_values(f.random, kTasks * 6 * 2);  // d_task[k] = row k
  auto forward = [&] {
    const Tensor input = host_tensor({6, 4}, x);
    const Tensor expert_outputs = experts.forward(input);
    for (auto& gate : gates) gate.forward(input, expert_outputs);
  };
  compare_stacked_with_separate(
      f,
      [&](std::int64_t k) -> std::vector<std::vector<double>> {
        // Only task k's loss: its gate and, through it, the experts.
        forward();
        Tensor d_experts = Tensor::zeros({3, 6, 2}, DType::kFloat64);
        auto dx = gates[k]
                      .backward(host_tensor({6, 2}, task_part(upstream, k)), d_experts)
                      .to_vector<double>();
        const auto dx_experts = experts.backward(d_experts).to_vector<double>();
        for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += dx_experts[i];
        return {dx};
      },
      [&]() -> std::vector<std::vector<double>> {
        forward();
        Tensor d_experts = Tensor::zeros({kTasks, 3, 6, 2}, DType::kFloat64);
        std::vector<double> dx(kTasks * 6 * 4, 0.0);
        for (std::int64_t k = 0; k < kTasks; ++k) {
          Tensor slice = d_experts.narrow_first(k, 1).reshaped({3, 6, 2});
          const auto dx_k =
              gates[k]
                  .backward_task(k, kTasks, host_tensor({6, 2}, task_part(upstream, k)), slice)
                  .to_vector<double>();
          std::copy(dx_k.begin(), dx_k.end(), dx.begin() + k * 6 * 4);
        }
        const auto dx_experts = experts.backward_stacked(d_experts).to_vector<double>();
        for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += dx_experts[i];
        return {dx};
      });
}
