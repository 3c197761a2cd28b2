// The tasks' Gram matrix reduced during the stacked backward (TaskGram::kDuringBackward) against
// the separate Gram pass over the per-task gradients it replaces, in double precision: per
// layer, through accumulation and mixed writers, in GradientSurgery, and through whole models.
// On the CPU both paths run the same products and sum every Gram entry in the same order, so
// they agree to the last bit; the tests allow 1e-12 relative (on the Cauchy-Schwarz scale
// sqrt(G_ii G_jj) for Gram entries) so that a change of summation order stays legal.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/layers/embedding.h"
#include "engine/layers/gate.h"
#include "engine/layers/linear.h"
#include "engine/models/multitask_model.h"
#include "engine/multitask/gradient_surgery.h"
#include "engine/multitask/task_gradients.h"
#include "kernels/multitask/gradient_surgery.h"
#include "tests/support/gradient_check.h"
#include "tests/support/small_model.h"

using namespace drgrad;
using namespace drgrad::engine;
using drgrad::testing::random_values;
using drgrad::testing::small_batch;
using drgrad::testing::small_spec;

namespace {

constexpr double kTolerance = 1e-12;

Tensor host_tensor(Shape shape, const std::vector<double>& values) {
  return Tensor::from_vector<double>(std::move(shape), values);
}

// The Gram matrix of a parameter's per-task gradients by the separate pass.
std::vector<double> gram_by_separate_pass(const Parameter& parameter) {
  const std::int64_t tasks = parameter.task_gradients.dim(0);
  std::vector<double> gram(static_cast<std::size_t>(tasks * tasks), 0.0);
  kernels::accumulate_task_gram<double>(kernels::Context::cpu(),
                                        parameter.task_gradients.data<double>(), tasks,
                                        parameter.task_gradients.numel() / tasks, gram.data());
  return gram;
}

void check_gram_close(const std::vector<double>& expected, const std::vector<double>& actual,
                      std::int64_t tasks, const std::string& what) {
  REQUIRE(expected.size() == actual.size());
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t j = 0; j < tasks; ++j) {
      const double scale =
          std::sqrt(std::abs(expected[i * tasks + i] * expected[j * tasks + j])) + 1e-300;
      INFO(what << " (" << i << ", " << j << "): separate pass " << expected[i * tasks + j]
                << ", during backward " << actual[i * tasks + j]);
      CHECK(std::abs(expected[i * tasks + j] - actual[i * tasks + j]) <= kTolerance * scale);
    }
  }
}

void check_values_close(const std::vector<double>& expected, const std::vector<double>& actual,
                        const std::string& what) {
  REQUIRE(expected.size() == actual.size());
  for (std::size_t e = 0; e < expected.size(); ++e) {
    INFO(what << " entry " << e << ": " << expected[e] << " vs " << actual[e]);
    CHECK(std::abs(expected[e] - actual[e]) <=
          kTolerance * std::max({1.0, std::abs(expected[e]), std::abs(actual[e])}));
  }
}

struct Fixture {
  ParameterStore store{DType::kFloat64};
  Random random{5};
  LayerBuilder builder{store, random, kernels::Context::cpu()};

  std::vector<Parameter*> parameters() const {
    std::vector<Parameter*> all;
    for (const auto& parameter : store.all()) all.push_back(parameter.get());
    return all;
  }
};

}  // namespace

TEST_CASE("linear stacked backward leaves the Gram of its per-task gradients",
          "[stacked][task_gram]") {
  for (const std::int64_t tasks : {1, 2, 4}) {
    for (const auto activation : {kernels::Activation::kIdentity, kernels::Activation::kRelu,
                                  kernels::Activation::kMish, kernels::Activation::kSigmoid}) {
      const std::string where =
          std::string(kernels::activation_name(activation)) + " K=" + std::to_string(tasks);
      Fixture f;
      Linear<double> layer(f.builder, "linear", "backbone", 37, 45, activation);
      const auto x = random_values(f.random, 3 * 37);
      const auto upstream = random_values(f.random, tasks * 3 * 45);

      // Without the Gram: the plain stacked backward.
      zero_task_gradients(f.parameters(), tasks);
      layer.forward(host_tensor({3, 37}, x));
      const auto dx_plain =
          layer.backward_stacked(host_tensor({tasks, 3, 45}, upstream)).to_vector<double>();
      const auto weight_plain = layer.weight().task_gradients.to_vector<double>();
      const auto bias_plain = layer.bias().task_gradients.to_vector<double>();
      CHECK_FALSE(layer.weight().task_gram.defined());

      // With it.
      zero_task_gradients(f.parameters(), tasks, TaskGram::kDuringBackward);
      CHECK_FALSE(layer.weight().task_gram_current);
      layer.forward(host_tensor({3, 37}, x));
      const auto dx_gram =
          layer.backward_stacked(host_tensor({tasks, 3, 45}, upstream)).to_vector<double>();
      check_values_close(dx_plain, dx_gram, "input gradient " + where);
      check_values_close(weight_plain, layer.weight().task_gradients.to_vector<double>(),
                         "weight gradients " + where);
      check_values_close(bias_plain, layer.bias().task_gradients.to_vector<double>(),
                         "bias gradients " + where);
      for (Parameter* parameter : {&layer.weight(), &layer.bias()}) {
        REQUIRE(has_current_task_gram(*parameter, tasks));
        check_gram_close(gram_by_separate_pass(*parameter),
                         parameter->task_gram.to_vector<double>(), tasks,
                         parameter->name + " " + where);
      }
    }
  }
}

TEST_CASE("the Gram left by an accumulating backward is that of the final gradients",
          "[stacked][task_gram]") {
  Fixture f;
  Linear<double> layer(f.builder, "linear", "backbone", 6, 5, kernels::Activation::kMish);
  const std::int64_t tasks = 3;
  zero_task_gradients(f.parameters(), tasks, TaskGram::kDuringBackward);
  // Two stacked backward passes into the same buffers (two uses of the layer in one step).
  for (int pass = 0; pass < 2; ++pass) {
    layer.forward(host_tensor({4, 6}, random_values(f.random, 4 * 6)));
    layer.backward_stacked(host_tensor({tasks, 4, 5}, random_values(f.random, tasks * 4 * 5)));
  }
  for (Parameter* parameter : {&layer.weight(), &layer.bias()}) {
    REQUIRE(has_current_task_gram(*parameter, tasks));
    check_gram_close(gram_by_separate_pass(*parameter), parameter->task_gram.to_vector<double>(),
                     tasks, parameter->name + " after two passes");
  }
  // A writer that does not update the Gram (one task's backward) makes it stale.
  layer.forward(host_tensor({4, 6}, random_values(f.random, 4 * 6)));
  layer.backward_task(1, tasks, host_tensor({4, 5}, random_values(f.random, 4 * 5)));
  CHECK_FALSE(has_current_task_gram(layer.weight(), tasks));
  CHECK_FALSE(has_current_task_gram(layer.bias(), tasks));
  // A later stacked pass covers everything in the buffers again.
  layer.forward(host_tensor({4, 6}, random_values(f.random, 4 * 6)));
  layer.backward_stacked(host_tensor({tasks, 4, 5}, random_values(f.random, tasks * 4 * 5)));
  REQUIRE(has_current_task_gram(layer.weight(), tasks));
  check_gram_close(gram_by_separate_pass(layer.weight()),
                   layer.weight().task_gram.to_vector<double>(), tasks, "after a mixed sequence");
}

TEST_CASE("gradient surgery takes the Gram from the backward and gives the same step",
          "[stacked][task_gram][surgery]") {
  for (const auto method : {SurgeryMethod::kPcgrad, SurgeryMethod::kCagrad}) {
    SECTION(surgery_method_name(method)) {
      // Embeddings (row-sparse: Gram pass), a softmax gate (logits layer: from the backward)
      // and a linear layer (from the backward).
      Fixture f;
      FeatureInput<double> input(f.builder, 2,
                                 {{"user", 10, 3, kernels::Pooling::kSum, OutOfRange::kError},
                                  {"item", 6, 2, kernels::Pooling::kMean, OutOfRange::kError}});
      Linear<double> layer(f.builder, "shared", "backbone", input.out_features(), 4,
                           kernels::Activation::kRelu);
      io::Batch batch;
      batch.size = 4;
      batch.dense = {0.5, -1.0, 2.0, 0.25, -0.5, 1.5, 0.0, 3.0};
      batch.sparse.push_back(io::SparseColumn{{4, 4, 7, 1, 0, 9, 4}, {0, 3, 4, 4, 7}});
      batch.sparse.push_back(io::SparseColumn{{5, 2, 2, 0}, {0, 1, 2, 3, 4}});
      const std::int64_t tasks = 3;
      const auto upstream = random_values(f.random, tasks * 4 * 4);
      GradientSurgeryOptions options;
      options.method = method;
      options.pcgrad = {true, 23};

      auto step = [&](TaskGram gram) {
        zero_task_gradients(f.parameters(), tasks, gram);
        layer.forward(input.forward(batch));
        input.backward_stacked(layer.backward_stacked(host_tensor({tasks, 4, 4}, upstream)));
        GradientSurgery surgery(kernels::Context::cpu(), options);
        surgery.apply(f.parameters());
        std::vector<double> combined;
        for (const auto& parameter : f.store.all()) {
          const auto part = parameter->gradient.to_vector<double>();
          combined.insert(combined.end(), part.begin(), part.end());
        }
        return std::make_tuple(surgery.last_gram(), surgery.last_weights(), combined,
                               surgery.last_gram_from_backward());
      };
      const auto [gram_plain, weights_plain, combined_plain, from_backward_plain] =
          step(TaskGram::kNone);
      const auto [gram_fused, weights_fused, combined_fused, from_backward_fused] =
          step(TaskGram::kDuringBackward);
      CHECK(from_backward_plain == 0);
      CHECK(from_backward_fused == 2);  // the linear layer's weight and bias
      check_gram_close(gram_plain, gram_fused, tasks, "surgery Gram");
      // CAGrad's three-task weights come from an iterative solver: its result moves with the
      // Gram's last bits by up to ~1e-11 (docs/multitask.md); PCGrad's are closed-form.
      const double weight_tolerance = method == SurgeryMethod::kCagrad ? 1e-10 : kTolerance;
      for (std::int64_t k = 0; k < tasks; ++k) {
        CHECK(std::abs(weights_plain[k] - weights_fused[k]) <=
              weight_tolerance * std::max(1.0, std::abs(weights_plain[k])));
      }
      if (method == SurgeryMethod::kPcgrad) {
        check_values_close(combined_plain, combined_fused, "combined gradient");
      }
    }
  }
}

TEST_CASE("models: the Gram during backward matches the separate pass for every backbone",
          "[models][stacked][task_gram]") {
  for (const auto backbone :
       {BackboneKind::kSharedBottom, BackboneKind::kMmoe, BackboneKind::kPle}) {
    SECTION(backbone_name(backbone)) {
      const int tasks = 3;
      MultiTaskModel<double> model(small_spec(backbone, tasks), kernels::Context::cpu(), 3);
      Random random(29);
      const io::Batch batch = small_batch(random, 6, tasks);
      const Tensor upstream = Tensor::from_vector<double>({6, tasks}, random_values(random, 18));
      std::vector<Parameter*> shared = model.parameters().group("backbone");
      for (Parameter* p : model.parameters().group("embeddings")) shared.push_back(p);

      auto run = [&](TaskGram gram) {
        model.parameters().zero_gradients();
        model.forward(batch);
        model.backward_per_task(upstream, gram);
        GradientSurgery surgery(kernels::Context::cpu(), {});
        surgery.apply(shared);
        return std::make_pair(surgery.last_gram(), surgery.last_gram_from_backward());
      };
      const auto [gram_plain, count_plain] = run(TaskGram::kNone);
      const auto [gram_fused, count_fused] = run(TaskGram::kDuringBackward);
      CHECK(count_plain == 0);
      // Shared-Bottom: every backbone parameter is a Linear's. MMoE: the experts (and the task
      // gates, written by backward_task) go through the Gram pass. PLE: the lower level's gates.
      if (backbone == BackboneKind::kMmoe) {
        CHECK(count_fused == 0);
      } else {
        CHECK(count_fused > 0);
      }
      check_gram_close(gram_plain, gram_fused, tasks, backbone_name(backbone));
      // Every parameter the backward marked current holds the Gram of its own gradients.
      for (const Parameter* p : shared) {
        if (!has_current_task_gram(*p, tasks)) continue;
        check_gram_close(gram_by_separate_pass(*p), p->task_gram.to_vector<double>(), tasks,
                         p->name);
      }
    }
  }
}
