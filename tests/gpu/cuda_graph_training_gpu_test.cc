// Training with training.cuda_graph against the same training without it, on the GPU: the steps
// of a batch shape seen before are captured once and replayed, steps of other shapes run eagerly
// in between, and every step's losses and the final parameters and optimizer state must match
// the eager run (the same kernels in the same order: a replay that read a stale batch, a stale
// Adam correction or freed memory would be far off). Also: a NaN batch is refused inside a
// replayed step, and configurations that cannot be captured are refused with what to change.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/multitask/drgrad_strategy.h"
#include "engine/multitask/surgery_strategy.h"
#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"
#include "tests/gpu/gpu_test_support.h"
#include "tests/gpu/gpu_training_support.h"

namespace {

namespace engine = drgrad::engine;
namespace io = drgrad::io;
using Catch::Contains;
using drgrad::kernels::Device;

constexpr std::int64_t kBatch = 64;
constexpr std::int64_t kShortBatch = 40;
constexpr std::int64_t kDistinctBatches = 6;
constexpr std::int64_t kSteps = 60;

struct GraphData {
  io::Schema schema;
  io::Batch all;
  std::vector<io::Batch> batches;  // full batches, then two short ones
};

GraphData make_data() {
  io::MmoeGeneratorOptions options;
  options.num_samples = kBatch * kDistinctBatches;
  options.seed = 23;
  options.input_dim = 12;
  options.sparse_slots = 3;
  options.sparse_vocabulary = 40;
  options.binary_labels = true;
  io::GeneratedData generated = io::generate_mmoe(options);
  GraphData data{generated.schema, generated.batch, {}};
  data.batches = drgrad::gpu_test::consecutive_batches(data.all, kBatch, kDistinctBatches);
  for (std::int64_t b = 0; b < 2; ++b) {
    std::vector<std::int64_t> rows(static_cast<std::size_t>(kShortBatch));
    for (std::int64_t i = 0; i < kShortBatch; ++i) rows[i] = (b * 97 + i * 5) % (kBatch * 4);
    data.batches.push_back(io::gather_rows(data.all, rows));
  }
  return data;
}

// The batch of step s: the full batches in turn, a short one every seventh step (so that eager
// steps of another shape fall between replays, and the short shape is captured too).
const io::Batch& batch_of_step(const GraphData& data, std::int64_t step) {
  if (step % 7 == 6) return data.batches[kDistinctBatches + (step / 7) % 2];
  return data.batches[step % kDistinctBatches];
}

engine::ModelSpec small_model(const io::Schema& schema, bool drgrad,
                              engine::EmbeddingBackward backward) {
  engine::ModelSpec spec = drgrad::gpu_test::spec_for_schema(schema, 4, backward);
  spec.backbone = engine::BackboneKind::kMmoe;
  spec.num_experts = 4;
  spec.expert_units = {16};
  spec.tower_units = {8};
  if (drgrad) {
    spec.split.enabled = true;
    spec.split.primary_task = 0;
    spec.split.aux_read_shared = true;
  }
  return spec;
}

std::unique_ptr<engine::Trainer> make_trainer(
    const GraphData& data, const engine::ModelSpec& spec, bool drgrad, bool cuda_graph,
    engine::OptimizerKind kind = engine::OptimizerKind::kAdam) {
  engine::OptimizerSpec optimizer;  // Adam: its bias corrections change every step
  optimizer.kind = kind;
  engine::TrainingOptions training;
  training.batch_size = kBatch;
  training.seed = 5;
  training.device = Device::cuda(0);
  training.show_progress = false;
  training.save_checkpoints = false;
  training.cuda_graph = cuda_graph;
  auto stream =
      std::make_unique<engine::InMemoryBatchStream>(data.schema, data.all, kBatch, false, 1);
  auto trainer =
      std::make_unique<engine::Trainer>(spec, optimizer, training, std::move(stream), nullptr);
  if (drgrad) {
    engine::DrgradSettings settings;
    settings.telemetry_every = 0;
    trainer->set_strategy(std::make_unique<engine::DrgradStrategy>(settings, trainer->model()));
  }
  return trainer;
}

struct Run {
  std::vector<std::vector<double>> losses;
  std::vector<std::vector<float>> parameters, optimizer_state;
  std::int64_t optimizer_steps = 0;
  std::size_t graphs = 0;
};

Run train(const GraphData& data, const engine::ModelSpec& spec, bool drgrad, bool cuda_graph,
          engine::OptimizerKind kind) {
  auto trainer = make_trainer(data, spec, drgrad, cuda_graph, kind);
  Run run;
  for (std::int64_t step = 0; step < kSteps; ++step) {
    run.losses.push_back(trainer->train_step(batch_of_step(data, step)));
  }
  for (const auto& parameter : trainer->model().parameters().all()) {
    run.parameters.push_back(parameter->value.to_vector<float>());
  }
  for (const auto& [name, tensor] : trainer->optimizer().state()) {
    run.optimizer_state.push_back(tensor.to_vector<float>());
  }
  run.optimizer_steps = trainer->optimizer().steps_taken();
  run.graphs = trainer->captured_step_graphs();
  return run;
}

// Largest |a - b| / (1e-6 + |b|) over two lists of arrays.
double worst_relative(const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b) {
  double worst = 0;
  for (std::size_t p = 0; p < b.size(); ++p) {
    for (std::size_t i = 0; i < b[p].size(); ++i) {
      const double d = std::abs(double(a[p][i]) - double(b[p][i])) / (1e-6 + std::abs(b[p][i]));
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
  }
  return worst;
}

void check_graph_matches_eager(bool drgrad, engine::EmbeddingBackward backward,
                               engine::OptimizerKind kind = engine::OptimizerKind::kAdam) {
  const GraphData data = make_data();
  const engine::ModelSpec spec = small_model(data.schema, drgrad, backward);
  const Run eager = train(data, spec, drgrad, false, kind);
  const Run graph = train(data, spec, drgrad, true, kind);
  // The full and the short shape were both seen twice, so both were captured.
  CHECK(eager.graphs == 0);
  CHECK(graph.graphs == 2);
  CHECK(graph.optimizer_steps == eager.optimizer_steps);
  REQUIRE(graph.losses.size() == eager.losses.size());
  // The same kernels on the same data in the same order: the same bits are expected; the bound
  // leaves room only for a library choosing another algorithm under capture. A stale batch or
  // Adam correction changes losses in the first digits.
  double worst_loss = 0;
  for (std::size_t s = 0; s < eager.losses.size(); ++s) {
    for (std::size_t k = 0; k < eager.losses[s].size(); ++k) {
      INFO("step " << s + 1 << " task " << k);
      CHECK(graph.losses[s][k] == Approx(eager.losses[s][k]).epsilon(1e-5));
      worst_loss = std::max(worst_loss, std::abs(graph.losses[s][k] - eager.losses[s][k]) /
                                            std::abs(eager.losses[s][k]));
    }
  }
  const double worst_parameter = worst_relative(graph.parameters, eager.parameters);
  const double worst_state = worst_relative(graph.optimizer_state, eager.optimizer_state);
  CHECK(worst_parameter <= 1e-4);
  CHECK(worst_state <= 1e-4);
  std::cout << (drgrad ? "drgrad" : "mmoe") << " graph vs eager after " << kSteps
            << " steps: worst loss difference " << worst_loss << " (relative), parameters "
            << worst_parameter << ", optimizer state " << worst_state
            << (worst_loss == 0 && worst_parameter == 0 ? " (identical bits)" : "") << std::endl;
}

}  // namespace

TEST_CASE("MMoE steps replayed from CUDA graphs match eager steps", "[gpu][cuda_graph]") {
  DRGRAD_REQUIRE_GPU();
  check_graph_matches_eager(false, engine::EmbeddingBackward::kDevicePlan);
}

TEST_CASE("DRGrad steps replayed from CUDA graphs match eager steps", "[gpu][cuda_graph]") {
  DRGRAD_REQUIRE_GPU();
  check_graph_matches_eager(true, engine::EmbeddingBackward::kDevicePlan);
}

TEST_CASE("Adagrad steps replayed from CUDA graphs match eager steps", "[gpu][cuda_graph]") {
  DRGRAD_REQUIRE_GPU();
  check_graph_matches_eager(false, engine::EmbeddingBackward::kDevicePlan,
                            engine::OptimizerKind::kAdagrad);
}

TEST_CASE("fit with evaluations and checkpoints between replays, and a resume, match eager",
          "[gpu][cuda_graph]") {
  DRGRAD_REQUIRE_GPU();
  const GraphData data = make_data();
  const engine::ModelSpec spec =
      small_model(data.schema, true, engine::EmbeddingBackward::kDevicePlan);
  // Batches of 50 over 384 samples: seven full batches and one of 34 per epoch, so both shapes are
  // captured, and evaluations and checkpoints (eager work) fall between replays.
  constexpr std::int64_t kFitBatch = 50;
  const auto run_dir = [](bool cuda_graph) {
    const auto dir = std::filesystem::temp_directory_path() /
                     (cuda_graph ? "drgrad_graph_fit_graph" : "drgrad_graph_fit_eager");
    std::filesystem::remove_all(dir);
    return dir.string();
  };
  const auto make = [&](bool cuda_graph, const std::string& dir) {
    engine::TrainingOptions training;
    training.batch_size = kFitBatch;
    training.epochs = 6;
    training.eval_every = 10;
    training.checkpoint_every = 16;
    training.keep_checkpoints = 0;
    training.seed = 9;
    training.device = Device::cuda(0);
    training.show_progress = false;
    training.run_dir = dir;
    training.cuda_graph = cuda_graph;
    auto train =
        std::make_unique<engine::InMemoryBatchStream>(data.schema, data.all, kFitBatch, true, 3);
    auto eval = std::make_unique<engine::InMemoryBatchStream>(data.schema, data.all, 128, false, 3);
    auto trainer = std::make_unique<engine::Trainer>(spec, engine::OptimizerSpec{}, training,
                                                     std::move(train), std::move(eval));
    engine::DrgradSettings settings;
    settings.telemetry_every = 0;
    trainer->set_strategy(std::make_unique<engine::DrgradStrategy>(settings, trainer->model()));
    return trainer;
  };
  const auto parameters = [](engine::Trainer& trainer) {
    std::vector<std::vector<float>> values;
    for (const auto& parameter : trainer.model().parameters().all()) {
      values.push_back(parameter->value.to_vector<float>());
    }
    return values;
  };
  const std::string eager_dir = run_dir(false), graph_dir = run_dir(true);
  auto eager = make(false, eager_dir);
  auto graph = make(true, graph_dir);
  const engine::Evaluation eager_final = eager->fit();
  const engine::Evaluation graph_final = graph->fit();
  CHECK(graph->captured_step_graphs() == 2);
  CHECK(graph->step() == eager->step());
  CHECK(worst_relative(parameters(*graph), parameters(*eager)) <= 1e-4);
  REQUIRE(graph->history().size() == eager->history().size());
  for (std::size_t k = 0; k < eager_final.tasks.size(); ++k) {
    CHECK(graph_final.tasks[k].auc == Approx(eager_final.tasks[k].auc).epsilon(1e-4));
    CHECK(graph_final.tasks[k].mean_loss == Approx(eager_final.tasks[k].mean_loss).epsilon(1e-4));
  }
  // Resumed from the step-16 checkpoint, the graph run continues like the eager one.
  const auto checkpoint = [](const std::string& dir) {
    return (std::filesystem::path(dir) / "checkpoints" / "step-000000016.ckpt").string();
  };
  auto eager_resumed = make(false, eager_dir);
  auto graph_resumed = make(true, graph_dir);
  eager_resumed->restore_checkpoint(checkpoint(eager_dir));
  graph_resumed->restore_checkpoint(checkpoint(graph_dir));
  // 14 steps: the short shape (steps 6 and 13) is captured again too.
  for (std::int64_t step = 0; step < 14; ++step) {
    const auto expected = eager_resumed->train_step(batch_of_step(data, step));
    const auto got = graph_resumed->train_step(batch_of_step(data, step));
    for (std::size_t k = 0; k < expected.size(); ++k) {
      CHECK(got[k] == Approx(expected[k]).epsilon(1e-5));
    }
  }
  CHECK(graph_resumed->captured_step_graphs() == 2);
  CHECK(worst_relative(parameters(*graph_resumed), parameters(*eager_resumed)) <= 1e-4);
}

TEST_CASE("a NaN batch is refused inside a replayed step", "[gpu][cuda_graph]") {
  DRGRAD_REQUIRE_GPU();
  const GraphData data = make_data();
  const engine::ModelSpec spec =
      small_model(data.schema, true, engine::EmbeddingBackward::kDevicePlan);
  auto trainer = make_trainer(data, spec, true, true);
  for (std::int64_t step = 0; step < 4; ++step) trainer->train_step(data.batches[step]);
  REQUIRE(trainer->captured_step_graphs() == 1);
  std::vector<std::vector<float>> before;
  for (const auto& parameter : trainer->model().parameters().all()) {
    before.push_back(parameter->value.to_vector<float>());
  }
  // Adam's moments and DRGrad's mixing weights must stay too: a pass that ignored the skip flag
  // could change them without moving a parameter.
  std::vector<std::vector<float>> state_before;
  for (const auto& [name, tensor] : trainer->optimizer().state()) {
    state_before.push_back(tensor.to_vector<float>());
  }
  const double mu_own_before = trainer->model().mu_own();
  const double mu_shared_before = trainer->model().mu_shared();
  const std::int64_t steps_before = trainer->step();
  const std::int64_t optimizer_steps_before = trainer->optimizer().steps_taken();
  io::Batch bad = data.batches[0];
  bad.labels[3] = NAN;
  CHECK_THROWS_WITH(trainer->train_step(bad), Contains("refused on the device"));
  CHECK(trainer->step() == steps_before);
  CHECK(trainer->optimizer().steps_taken() == optimizer_steps_before);
  std::size_t p = 0;
  for (const auto& parameter : trainer->model().parameters().all()) {
    INFO(parameter->name);
    CHECK(parameter->value.to_vector<float>() == before[p++]);
  }
  std::size_t s = 0;
  for (const auto& [name, tensor] : trainer->optimizer().state()) {
    INFO(name);
    CHECK(tensor.to_vector<float>() == state_before[s++]);
  }
  CHECK(trainer->model().mu_own() == mu_own_before);
  CHECK(trainer->model().mu_shared() == mu_shared_before);
  // Training goes on from there, still replaying.
  const auto losses = trainer->train_step(data.batches[1]);
  for (const double loss : losses) CHECK(std::isfinite(loss));
  CHECK(trainer->captured_step_graphs() == 1);
}

TEST_CASE("steps that cannot be captured are refused with what to change", "[gpu][cuda_graph]") {
  DRGRAD_REQUIRE_GPU();
  const GraphData data = make_data();
  {
    const engine::ModelSpec spec =
        small_model(data.schema, false, engine::EmbeddingBackward::kHostPlan);
    auto trainer = make_trainer(data, spec, false, true);
    CHECK_THROWS_WITH(trainer->train_step(data.batches[0]),
                      Contains("device_plan") && Contains("training.cuda_graph = false"));
  }
  {
    const engine::ModelSpec spec =
        small_model(data.schema, false, engine::EmbeddingBackward::kDevicePlan);
    auto trainer = make_trainer(data, spec, false, true);
    engine::GradientSurgeryOptions options;
    options.method = engine::SurgeryMethod::kPcgrad;
    trainer->set_strategy(std::make_unique<engine::SurgeryStrategy>(
        drgrad::kernels::Context{Device::cuda(0), nullptr}, options));
    CHECK_THROWS_WITH(trainer->train_step(data.batches[0]),
                      Contains("pcgrad") && Contains("Gram matrix"));
  }
}
