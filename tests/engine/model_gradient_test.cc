// Gradient checks through whole models (double precision): Shared-Bottom, MMoE and PLE with
// dense inputs, embedding bags and several tasks.
#include <catch2/catch.hpp>

#include <map>

#include "engine/models/multitask_model.h"
#include "tests/support/gradient_check.h"
#include "tests/support/small_model.h"

using namespace drgrad;
using namespace drgrad::engine;
using drgrad::testing::check_parameter_gradients;
using drgrad::testing::random_values;
using drgrad::testing::small_batch;
using drgrad::testing::small_spec;
using drgrad::testing::weighted_sum;

namespace {

// With a stopped personal gradient the analytic embedding gradient of the personal slots is
// deliberately not the true one; `skip_personal` leaves those tables out.
void check_model(const ModelSpec& spec, int num_tasks, double mu_own = 0.5,
                 bool skip_personal = false) {
  MultiTaskModel<double> model(spec, kernels::Context::cpu(), 3);
  model.set_mixing(mu_own, 1.0 - mu_own);
  Random random(11);
  const io::Batch batch = small_batch(random, 5, num_tasks);
  const auto upstream = random_values(random, 5 * num_tasks);
  check_parameter_gradients(
      model.parameters(), [&] { return weighted_sum(model.forward(batch), upstream); },
      [&] {
        model.forward(batch);
        model.backward(Tensor::from_vector<double>({5, num_tasks}, upstream));
      },
      8, 1e-6,
      [&](const Parameter& parameter) {
        if (!skip_personal) return true;
        for (const auto& slot : spec.split.personal_slots) {
          if (parameter.name == "embeddings/" + slot) return false;
        }
        return true;
      });
}

void check_model(BackboneKind backbone, int num_tasks) {
  check_model(small_spec(backbone, num_tasks), num_tasks);
}

ModelSpec split_spec(BackboneKind backbone, int num_tasks, bool aux_read_shared,
                     std::vector<std::string> personal, bool stop_personal_gradient) {
  ModelSpec spec = small_spec(backbone, num_tasks);
  spec.split.enabled = true;
  spec.split.primary_task = num_tasks > 2 ? 1 : 0;
  spec.split.aux_read_shared = aux_read_shared;
  spec.split.personal_slots = std::move(personal);
  spec.split.stop_personal_gradient = stop_personal_gradient;
  return spec;
}
}  // namespace

TEST_CASE("Shared-Bottom model gradients", "[gradient][models]") {
  check_model(BackboneKind::kSharedBottom, 2);
}

TEST_CASE("MMoE model gradients", "[gradient][models]") {
  check_model(BackboneKind::kMmoe, 2);
}

TEST_CASE("PLE model gradients, two levels, three tasks", "[gradient][models]") {
  check_model(BackboneKind::kPle, 3);
}

TEST_CASE("split towers: gradients through T', T'' and v_s for every backbone",
          "[gradient][models][split]") {
  for (const auto backbone :
       {BackboneKind::kSharedBottom, BackboneKind::kMmoe, BackboneKind::kPle}) {
    SECTION(backbone_name(backbone)) {
      check_model(split_spec(backbone, 2, true, {}, true), 2, 0.3);
    }
  }
}

TEST_CASE("split towers with auxiliary towers on their own gate output", "[gradient][models]") {
  check_model(split_spec(BackboneKind::kMmoe, 3, false, {}, true), 3, 0.7);
}

TEST_CASE("personalized gate gradients, with and without the stop-gradient switch",
          "[gradient][models][split]") {
  for (const bool stop : {true, false}) {
    SECTION(stop ? "gradient stopped" : "gradient flows into the embeddings") {
      check_model(split_spec(BackboneKind::kMmoe, 2, true, {"b", "a"}, stop), 2, 0.4, stop);
    }
  }
}

TEST_CASE("the personalized gate's stop-gradient switch decides what reaches e_p",
          "[models][split]") {
  // Slot "b" is read only through the gate: stopped, its table gets no gradient from the gate,
  // so its only gradient comes from the backbone input; compare the two settings.
  auto gradient_of_b = [](bool stop) {
    ModelSpec spec = split_spec(BackboneKind::kMmoe, 2, true, {"b"}, stop);
    MultiTaskModel<double> model(spec, kernels::Context::cpu(), 3);
    Random random(11);
    const io::Batch batch = small_batch(random, 5, 2);
    model.parameters().zero_gradients();
    model.forward(batch);
    model.backward(Tensor::from_vector<double>({5, 2}, random_values(random, 10)));
    return model.parameters().get("embeddings/b").gradient.to_vector<double>();
  };
  CHECK(gradient_of_b(true) != gradient_of_b(false));
}

TEST_CASE("split towers register T' and T'' as their own groups", "[models][split]") {
  MultiTaskModel<float> model(split_spec(BackboneKind::kMmoe, 2, true, {"a"}, true),
                              kernels::Context::cpu(), 1);
  const auto groups = model.parameters().group_names();
  CHECK(groups == std::vector<std::string>{"embeddings", "backbone", "tower/task0/own",
                                           "tower/task1", "tower/task0/shared"});
  CHECK(model.primary_own_group() == "tower/task0/own");
  CHECK(model.mu_own() == 0.5);
  CHECK(model.parameters().contains("backbone/gate/shared/weight"));
  CHECK(model.parameters().contains("backbone/personal_gate/weight"));
}

TEST_CASE("parameters are grouped by embeddings, backbone and task tower", "[models]") {
  MultiTaskModel<float> model(small_spec(BackboneKind::kPle, 2), kernels::Context::cpu(), 1);
  const auto groups = model.parameters().group_names();
  CHECK(groups == std::vector<std::string>{"embeddings", "backbone", "tower/task0", "tower/task1"});
  CHECK(model.parameters().group("tower/task1").size() == 4);  // 2 layers x (weight, bias)
  CHECK(model.parameters().get("embeddings/a").row_sparse);
}

TEST_CASE("per-task backward through a backbone equals one ordinary backward per task",
          "[models][stacked]") {
  for (const auto backbone :
       {BackboneKind::kSharedBottom, BackboneKind::kMmoe, BackboneKind::kPle}) {
    SECTION(backbone_name(backbone)) {
      const int tasks = 3;
      MultiTaskModel<double> model(small_spec(backbone, tasks), kernels::Context::cpu(), 3);
      Random random(17);
      const io::Batch batch = small_batch(random, 6, tasks);
      const auto upstream = random_values(random, 6 * tasks);
      model.parameters().zero_gradients();
      model.forward(batch);
      model.backward_per_task(Tensor::from_vector<double>({6, tasks}, upstream));
      std::map<std::string, std::vector<double>> stacked;
      std::map<std::string, std::vector<std::int64_t>> stacked_rows;
      for (const auto& p : model.parameters().all()) {
        if (p->group != "backbone" && p->group != "embeddings") continue;
        stacked[p->name] = p->task_gradients.to_vector<double>();
        stacked_rows[p->name] = p->touched_rows;
      }
      for (int k = 0; k < tasks; ++k) {
        std::vector<double> only_k(upstream.size(), 0.0);
        for (int b = 0; b < 6; ++b) only_k[b * tasks + k] = upstream[b * tasks + k];
        model.parameters().zero_gradients();
        model.forward(batch);
        model.backward(Tensor::from_vector<double>({6, tasks}, only_k));
        for (const auto& p : model.parameters().all()) {
          if (!stacked.count(p->name)) continue;
          const auto separate = p->gradient.to_vector<double>();
          const auto& all = stacked.at(p->name);
          const std::size_t n = separate.size();
          if (p->row_sparse) CHECK(p->touched_rows == stacked_rows.at(p->name));
          REQUIRE(all.size() == n * tasks);
          for (std::size_t i = 0; i < n; ++i) {
            INFO(p->name << " task " << k << " entry " << i);
            CHECK(all[k * n + i] == Approx(separate[i]).epsilon(1e-10).margin(1e-13));
          }
        }
      }
    }
  }
}
