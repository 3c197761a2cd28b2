// Mlp::backward behind relu layers: each layer hands the relu layer before it its pre-activation
// gradient (Linear::backward_into_relu_producer). Checked against central differences in double
// and against the plain layer-by-layer backward.
#include <catch2/catch.hpp>

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
  Random random{11};
  LayerBuilder builder{store, random, kernels::Context::cpu()};
};

Tensor host_tensor(Shape shape, const std::vector<double>& values) {
  return Tensor::from_vector<double>(std::move(shape), values);
}

// Biases start at zero, so a row whose relu inputs are all off would put the next layer exactly
// on its kink, where central differences see half a derivative: move every bias off zero.
void randomise_biases(Mlp<double>& mlp, Random& random) {
  for (auto& layer : mlp.layers()) {
    const auto values = random_values(random, layer.out_features());
    double* bias = layer.bias().value.data<double>();
    for (std::size_t i = 0; i < values.size(); ++i) bias[i] = values[i];
  }
}
}  // namespace

TEST_CASE("MLP gradients through relu layers", "[gradient][layers]") {
  for (bool activate_last : {false, true}) {
    SECTION(activate_last ? "relu on every layer" : "plain last layer") {
      Fixture f;
      Mlp<double> mlp(f.builder, "mlp", "backbone", 6, {5, 4, 3}, kernels::Activation::kRelu,
                      activate_last);
      randomise_biases(mlp, f.random);
      const auto x = random_values(f.random, 7 * 6);
      const auto upstream = random_values(f.random, 7 * 3);
      auto loss_of = [&](const std::vector<double>& input) {
        return weighted_sum(mlp.forward(host_tensor({7, 6}, input)), upstream);
      };
      check_parameter_gradients(
          f.store, [&] { return loss_of(x); },
          [&] {
            mlp.forward(host_tensor({7, 6}, x));
            mlp.backward(host_tensor({7, 3}, upstream));
          });
      mlp.forward(host_tensor({7, 6}, x));
      check_input_gradient(x, loss_of,
                           mlp.backward(host_tensor({7, 3}, upstream)).to_vector<double>());
    }
  }
}

TEST_CASE("MLP backward into relu producers equals the layer-by-layer backward",
          "[gradient][layers]") {
  Fixture f;
  Mlp<double> mlp(f.builder, "mlp", "backbone", 6, {8, 5, 2}, kernels::Activation::kRelu, false);
  randomise_biases(mlp, f.random);
  const auto x = random_values(f.random, 9 * 6);
  const auto upstream = random_values(f.random, 9 * 2);

  mlp.forward(host_tensor({9, 6}, x));
  f.store.zero_gradients();
  const auto chained_dx = mlp.backward(host_tensor({9, 2}, upstream)).to_vector<double>();
  std::vector<std::vector<double>> chained;
  for (auto& layer : mlp.layers()) {
    chained.push_back(layer.weight().gradient.to_vector<double>());
    chained.push_back(layer.bias().gradient.to_vector<double>());
  }

  mlp.forward(host_tensor({9, 6}, x));
  f.store.zero_gradients();
  Tensor d = host_tensor({9, 2}, upstream);
  for (std::size_t i = mlp.layers().size(); i-- > 0;) d = mlp.layers()[i].backward(d);
  const auto plain_dx = d.to_vector<double>();
  REQUIRE(plain_dx.size() == chained_dx.size());
  for (std::size_t i = 0; i < plain_dx.size(); ++i) {
    CHECK(chained_dx[i] == Approx(plain_dx[i]).epsilon(1e-13).margin(1e-15));
  }
  std::size_t at = 0;
  for (auto& layer : mlp.layers()) {
    for (const Tensor* gradient : {&layer.weight().gradient, &layer.bias().gradient}) {
      const auto plain = gradient->to_vector<double>();
      const auto& expected = chained[at++];
      REQUIRE(plain.size() == expected.size());
      for (std::size_t i = 0; i < plain.size(); ++i) {
        CHECK(expected[i] == Approx(plain[i]).epsilon(1e-13).margin(1e-15));
      }
    }
  }
}
