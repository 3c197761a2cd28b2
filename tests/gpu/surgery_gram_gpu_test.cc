// GPU test of the surgery's Gram matrix taken from the stacked backward: an MLP's per-task
// gradients, their Gram (Parameter::task_gram) and the PCGrad / CAGrad step on CUDA against the
// same layers on the CPU (float both), from the same initial weights and inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/layers/linear.h"
#include "engine/multitask/gradient_surgery.h"
#include "engine/multitask/task_gradients.h"
#include "kernels/multitask/task_gradient_gram.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using engine::Tensor;

// One copy of the shared part on one device: a two-layer MLP (37 -> 45 -> 20, mish).
struct SharedPart {
  engine::ParameterStore store;
  engine::Random random{41};
  engine::LayerBuilder builder;
  engine::Mlp<float> mlp;

  explicit SharedPart(kernels::Context ctx)
      : store(engine::DType::kFloat32, ctx.device),
        builder{store, random, ctx},
        mlp(builder, "mlp", "backbone", 37, {45, 20}, kernels::Activation::kMish) {}

  std::vector<engine::Parameter*> parameters() {
    std::vector<engine::Parameter*> all;
    for (const auto& parameter : store.all()) all.push_back(parameter.get());
    return all;
  }
};

}  // namespace

TEST_CASE("surgery Gram from the stacked backward on CUDA matches the CPU", "[gpu][task_gram]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const std::int64_t tasks = 3, batch = 65;
  const auto x = random_floats(random, batch * 37, -1.f, 1.f);
  const auto upstream = random_floats(random, tasks * batch * 20, -1.f, 1.f);
  for (const auto method : {engine::SurgeryMethod::kPcgrad, engine::SurgeryMethod::kCagrad}) {
    INFO(engine::surgery_method_name(method));
    std::vector<std::vector<double>> grams, weights;
    std::vector<std::vector<std::vector<float>>> gradients;
    for (const kernels::Context ctx : {kernels::Context::cpu(), cuda_context()}) {
      SharedPart part(ctx);
      engine::zero_task_gradients(part.parameters(), tasks, engine::TaskGram::kDuringBackward);
      part.mlp.forward(Tensor::from_vector<float>({batch, 37}, x).to(ctx.device));
      part.mlp.backward_stacked(
          Tensor::from_vector<float>({tasks, batch, 20}, upstream).to(ctx.device), false);
      engine::GradientSurgeryOptions options;
      options.method = method;
      engine::GradientSurgery surgery(ctx, options);
      surgery.apply(part.parameters());
      CHECK(surgery.last_gram_from_backward() == 4);  // two layers' weight and bias
      grams.push_back(surgery.last_gram());
      weights.push_back(surgery.last_weights());
      std::vector<std::vector<float>> combined;
      for (const auto& parameter : part.store.all()) {
        combined.push_back(parameter->gradient.to(kernels::Device::cpu()).to_vector<float>());
      }
      gradients.push_back(combined);
    }
    // fp32 products in another order (cuBLAS / the fused kernel against OpenBLAS): the Gram
    // within 1e-4 on the Cauchy-Schwarz scale, the weights likewise, the combined gradients
    // within the GEMM tolerance.
    for (std::int64_t i = 0; i < tasks; ++i) {
      for (std::int64_t j = 0; j < tasks; ++j) {
        const double scale = std::sqrt(grams[0][i * tasks + i] * grams[0][j * tasks + j]);
        INFO("Gram (" << i << ", " << j << "): cpu " << grams[0][i * tasks + j] << ", cuda "
                      << grams[1][i * tasks + j]);
        CHECK(std::abs(grams[0][i * tasks + j] - grams[1][i * tasks + j]) <= 1e-4 * scale);
      }
      INFO("weight " << i << ": cpu " << weights[0][i] << ", cuda " << weights[1][i]);
      CHECK(std::abs(weights[0][i] - weights[1][i]) <= 1e-3 * (1.0 + std::abs(weights[0][i])));
    }
    for (std::size_t p = 0; p < gradients[0].size(); ++p) {
      check_close(gradients[1][p], gradients[0][p], kGemmTolerance,
                  "combined gradient of parameter " + std::to_string(p));
    }
  }
}

}  // namespace drgrad::gpu_test
