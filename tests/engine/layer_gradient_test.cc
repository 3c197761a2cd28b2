// Gradient checks (double precision, central differences) for every layer: linear with each
// activation, MLP, expert group, softmax gate, embedding bag (sum, mean, empty bags, hashing).
#include <catch2/catch.hpp>

#include "engine/layers/embedding.h"
#include "engine/layers/experts.h"
#include "engine/layers/gate.h"
#include "engine/layers/linear.h"
#include "tests/support/gradient_check.h"

using namespace drgrad;
using namespace drgrad::engine;
using drgrad::testing::check_input_gradient;
using drgrad::testing::check_parameter_gradients;
using drgrad::testing::random_values;
using drgrad::testing::weighted_sum;

namespace {
struct Fixture {
  ParameterStore store{DType::kFloat64};
  Random random{7};
  LayerBuilder builder{store, random, kernels::Context::cpu()};
};

Tensor host_tensor(Shape shape, const std::vector<double>& values) {
  return Tensor::from_vector<double>(std::move(shape), values);
}
}  // namespace

TEST_CASE("linear layer gradients for every activation", "[gradient][layers]") {
  for (const auto activation : {kernels::Activation::kIdentity, kernels::Activation::kRelu,
                                kernels::Activation::kMish, kernels::Activation::kSigmoid}) {
    SECTION(kernels::activation_name(activation)) {
      Fixture f;
      Linear<double> layer(f.builder, "linear", "backbone", 5, 3, activation);
      const auto x = random_values(f.random, 4 * 5);
      const auto upstream = random_values(f.random, 4 * 3);
      auto loss_of = [&](const std::vector<double>& input) {
        return weighted_sum(layer.forward(host_tensor({4, 5}, input)), upstream);
      };
      check_parameter_gradients(
          f.store, [&] { return loss_of(x); },
          [&] {
            layer.forward(host_tensor({4, 5}, x));
            layer.backward(host_tensor({4, 3}, upstream));
          });
      layer.forward(host_tensor({4, 5}, x));
      const auto dx = layer.backward(host_tensor({4, 3}, upstream)).to_vector<double>();
      check_input_gradient(x, loss_of, dx);
    }
  }
}

TEST_CASE("MLP gradients", "[gradient][layers]") {
  Fixture f;
  Mlp<double> mlp(f.builder, "mlp", "backbone", 6, {5, 4, 1}, kernels::Activation::kMish, false);
  const auto x = random_values(f.random, 3 * 6);
  const auto upstream = random_values(f.random, 3 * 1);
  auto loss_of = [&](const std::vector<double>& input) {
    return weighted_sum(mlp.forward(host_tensor({3, 6}, input)), upstream);
  };
  check_parameter_gradients(
      f.store, [&] { return loss_of(x); },
      [&] {
        mlp.forward(host_tensor({3, 6}, x));
        mlp.backward(host_tensor({3, 1}, upstream));
      });
  mlp.forward(host_tensor({3, 6}, x));
  check_input_gradient(x, loss_of, mlp.backward(host_tensor({3, 1}, upstream)).to_vector<double>());
}

TEST_CASE("expert group gradients", "[gradient][layers]") {
  Fixture f;
  // Mish, not relu: with zero-initialised biases a relu layer can sit exactly on its kink.
  ExpertGroup<double> experts(f.builder, "experts", "backbone", 3, 4, {5, 2},
                              kernels::Activation::kMish);
  const auto x = random_values(f.random, 6 * 4);
  const auto upstream = random_values(f.random, 3 * 6 * 2);
  auto loss_of = [&](const std::vector<double>& input) {
    return weighted_sum(experts.forward(host_tensor({6, 4}, input)), upstream);
  };
  check_parameter_gradients(
      f.store, [&] { return loss_of(x); },
      [&] {
        experts.forward(host_tensor({6, 4}, x));
        experts.backward(host_tensor({3, 6, 2}, upstream));
      });
  experts.forward(host_tensor({6, 4}, x));
  check_input_gradient(x, loss_of,
                       experts.backward(host_tensor({3, 6, 2}, upstream)).to_vector<double>());
}

TEST_CASE("softmax gate and gated combination gradients", "[gradient][layers]") {
  Fixture f;
  // Mixes experts 0, 2 and 3 of a level of four.
  SoftmaxGate<double> gate(f.builder, "gate", "backbone", 4, {0, 2, 3});
  const auto x = random_values(f.random, 5 * 4);
  auto experts = random_values(f.random, 4 * 5 * 3);
  const auto upstream = random_values(f.random, 5 * 3);
  auto loss_of = [&](const std::vector<double>& input) {
    return weighted_sum(gate.forward(host_tensor({5, 4}, input), host_tensor({4, 5, 3}, experts)),
                        upstream);
  };
  Tensor d_experts = Tensor::zeros({4, 5, 3}, DType::kFloat64);
  check_parameter_gradients(
      f.store, [&] { return loss_of(x); },
      [&] {
        d_experts.zero_();
        gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, experts));
        gate.backward(host_tensor({5, 3}, upstream), d_experts);
      });
  d_experts.zero_();
  gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, experts));
  const auto dx = gate.backward(host_tensor({5, 3}, upstream), d_experts).to_vector<double>();
  check_input_gradient(x, loss_of, dx);
  // Gradient with respect to the expert outputs; expert 1 is not selected and gets none.
  const auto analytic_experts = d_experts.to_vector<double>();
  auto loss_of_experts = [&](const std::vector<double>& values) {
    return weighted_sum(gate.forward(host_tensor({5, 4}, x), host_tensor({4, 5, 3}, values)),
                        upstream);
  };
  check_input_gradient(experts, loss_of_experts, analytic_experts);
  for (int i = 15; i < 30; ++i) CHECK(analytic_experts[i] == 0.0);
}

TEST_CASE("embedding bag gradients with sum and mean pooling", "[gradient][layers]") {
  for (const auto pooling : {kernels::Pooling::kSum, kernels::Pooling::kMean}) {
    Fixture f;
    EmbeddingSlotSpec spec{"slot", 10, 3, pooling, OutOfRange::kError};
    EmbeddingBag<double> bag(f.builder, spec);
    // Four samples: a bag with a repeated id, a single id, an empty bag, and three ids.
    io::SparseColumn column{{4, 4, 7, 1, 0, 9, 4}, {0, 3, 4, 4, 7}};
    const auto upstream = random_values(f.random, 4 * 5);
    auto loss = [&] {
      Tensor out = Tensor::zeros({4, 5}, DType::kFloat64);
      bag.forward(column, 4, out, 1);
      return weighted_sum(out, upstream);
    };
    check_parameter_gradients(
        f.store, loss,
        [&] {
          Tensor out = Tensor::zeros({4, 5}, DType::kFloat64);
          bag.forward(column, 4, out, 1);
          bag.backward(host_tensor({4, 5}, upstream), 1);
        },
        30);
    CHECK(bag.table().touched_rows == std::vector<std::int64_t>{0, 1, 4, 7, 9});
    Tensor out = Tensor::zeros({4, 5}, DType::kFloat64);
    bag.forward(column, 4, out, 1);
    const auto values = out.to_vector<double>();
    for (int j = 1; j < 4; ++j) CHECK(values[2 * 5 + j] == 0.0);  // the empty bag pools to zero
  }
}

TEST_CASE("embedding bag rejects out-of-range ids unless the slot hashes them", "[layers]") {
  Fixture f;
  io::SparseColumn column{{3, 12345}, {0, 1, 2}};
  Tensor out = Tensor::zeros({2, 2}, DType::kFloat64);
  EmbeddingBag<double> strict(f.builder,
                              {"strict", 10, 2, kernels::Pooling::kSum, OutOfRange::kError});
  CHECK_THROWS_WITH(strict.forward(column, 2, out, 0),
                    Catch::Contains("strict") && Catch::Contains("12345") &&
                        Catch::Contains("sample 1") && Catch::Contains("hash"));
  EmbeddingBag<double> hashing(f.builder,
                               {"hashing", 10, 2, kernels::Pooling::kSum, OutOfRange::kHash});
  hashing.forward(column, 2, out, 0);
  hashing.backward(Tensor::zeros({2, 2}, DType::kFloat64), 0);
  const std::int64_t hashed = hashed_row(12345, 10);
  CHECK(hashed >= 0);
  CHECK(hashed < 10);
  CHECK(hashed_row(3, 10) == 3);
  CHECK(hashed_row(-1, 10) >= 0);
  CHECK(hashing.table().touched_rows.size() == (hashed == 3 ? 1u : 2u));
}
