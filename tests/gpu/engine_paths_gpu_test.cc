// The engine's paths on CUDA that the MMoE/DRGrad parity test does not take: Shared-Bottom, PLE,
// the personalized gate, PCGrad and CAGrad, the device-built and atomic embedding backward, sum
// pooling; for each, a few steps against the CPU, evaluation, and checkpoints across devices
// (saved on CUDA and restored on the CPU, saved on the CPU and resumed on CUDA).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
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
namespace kernels = drgrad::kernels;
using drgrad::kernels::Device;

constexpr std::int64_t kBatch = 64;
constexpr std::int64_t kSteps = 4;

struct PathCase {
  std::string name;
  engine::BackboneKind backbone;
  std::string strategy;  // none, drgrad, pcgrad, cagrad
  engine::EmbeddingBackward embedding_backward;
  kernels::Pooling pooling;
  bool personal_gate;
};

struct PathData {
  io::Schema schema;
  io::Batch train, eval;
  std::vector<io::Batch> batches;
};

PathData make_data() {
  io::MmoeGeneratorOptions options;
  options.num_samples = kBatch * kSteps + 256;
  options.seed = 3;
  options.input_dim = 10;
  options.sparse_slots = 2;
  options.sparse_vocabulary = 30;
  options.binary_labels = true;
  const io::GeneratedData generated = io::generate_mmoe(options);
  PathData data{generated.schema, generated.batch, {}, {}};
  data.batches = drgrad::gpu_test::consecutive_batches(data.train, kBatch, kSteps);
  data.eval = drgrad::gpu_test::consecutive_batches(data.train, 256, 1, kBatch * kSteps).front();
  return data;
}

engine::ModelSpec spec_for(const PathCase& c, const io::Schema& schema) {
  engine::ModelSpec spec =
      drgrad::gpu_test::spec_for_schema(schema, 4, c.embedding_backward, c.pooling);
  spec.backbone = c.backbone;
  spec.bottom_units = {16, 8};
  spec.num_experts = 3;
  spec.expert_units = {12, 8};
  spec.ple_levels = 2;
  spec.task_experts = 1;
  spec.shared_experts = 2;
  spec.tower_units = {6};
  if (c.strategy == "drgrad") {
    spec.split.enabled = true;
    spec.split.primary_task = 0;
    if (c.personal_gate) spec.split.personal_slots = {schema.sparse_slots.front().name};
  }
  return spec;
}

std::unique_ptr<engine::Trainer> make_trainer(const PathCase& c, const PathData& data,
                                              Device device) {
  engine::OptimizerSpec optimizer;  // Adam, learning rate 1e-3
  engine::TrainingOptions training;
  training.batch_size = kBatch;
  training.seed = 17;
  training.device = device;
  training.show_progress = false;
  training.save_checkpoints = false;
  auto trainer = std::make_unique<engine::Trainer>(
      spec_for(c, data.schema), optimizer, training,
      std::make_unique<engine::InMemoryBatchStream>(data.schema, data.train, kBatch, false, 1),
      std::make_unique<engine::InMemoryBatchStream>(data.schema, data.eval, 128, false, 1));
  if (c.strategy == "drgrad") {
    engine::DrgradSettings settings;
    settings.telemetry_every = 0;
    trainer->set_strategy(std::make_unique<engine::DrgradStrategy>(settings, trainer->model()));
  } else if (c.strategy != "none") {
    engine::GradientSurgeryOptions surgery;
    surgery.method =
        c.strategy == "pcgrad" ? engine::SurgeryMethod::kPcgrad : engine::SurgeryMethod::kCagrad;
    trainer->set_strategy(
        std::make_unique<engine::SurgeryStrategy>(trainer->model().context(), surgery));
  }
  return trainer;
}

std::vector<std::vector<float>> parameter_values(engine::Trainer& trainer) {
  std::vector<std::vector<float>> values;
  for (const auto& parameter : trainer.model().parameters().all()) {
    values.push_back(parameter->value.to_vector<float>());
  }
  return values;
}

// Every tensor's rms difference within the training parity test's tensor bound, 5e-3 + 1e-2
// rms(expected) (docs/gpu.md says why: Adam moves noise-gradient elements by lr whatever their
// size).
void check_close(const std::vector<std::vector<float>>& expected,
                 const std::vector<std::vector<float>>& got, engine::Trainer& names) {
  REQUIRE(expected.size() == got.size());
  const auto& parameters = names.model().parameters().all();
  for (std::size_t p = 0; p < expected.size(); ++p) {
    INFO("parameter " << parameters[p]->name);
    REQUIRE(expected[p].size() == got[p].size());
    double difference2 = 0, value2 = 0;
    for (std::size_t i = 0; i < expected[p].size(); ++i) {
      const double d = double(got[p][i]) - double(expected[p][i]);
      difference2 += d * d;
      value2 += double(expected[p][i]) * double(expected[p][i]);
    }
    const auto n = static_cast<double>(std::max<std::size_t>(expected[p].size(), 1));
    CHECK(std::sqrt(difference2 / n) <= 5e-3 + 1e-2 * std::sqrt(value2 / n));
  }
}

void check_path(const PathCase& c) {
  const PathData data = make_data();
  auto cpu = make_trainer(c, data, Device::cpu());
  auto gpu = make_trainer(c, data, Device::cuda(0));
  // Initialisation draws on the host for both devices.
  CHECK(parameter_values(*cpu) == parameter_values(*gpu));

  for (std::int64_t step = 0; step < kSteps; ++step) {
    INFO("step " << step + 1);
    const std::vector<double> expected = cpu->train_step(data.batches[step]);
    const std::vector<double> got = gpu->train_step(data.batches[step]);
    REQUIRE(expected.size() == got.size());
    for (std::size_t k = 0; k < expected.size(); ++k) {
      CHECK(std::isfinite(got[k]));
      CHECK(got[k] == Approx(expected[k]).epsilon(step == 0 ? 1e-5 : 1e-3));
    }
  }
  check_close(parameter_values(*cpu), parameter_values(*gpu), *cpu);
  if (c.strategy == "drgrad") {
    CHECK(gpu->model().mu_own() == Approx(cpu->model().mu_own()).margin(1e-2));
  }

  const engine::Evaluation cpu_eval = cpu->evaluate();
  const engine::Evaluation gpu_eval = gpu->evaluate();
  REQUIRE(cpu_eval.tasks.size() == gpu_eval.tasks.size());
  for (std::size_t k = 0; k < cpu_eval.tasks.size(); ++k) {
    INFO("task " << cpu_eval.tasks[k].name);
    CHECK(gpu_eval.tasks[k].samples == cpu_eval.tasks[k].samples);
    CHECK(gpu_eval.tasks[k].mean_loss == Approx(cpu_eval.tasks[k].mean_loss).epsilon(1e-3));
    CHECK(gpu_eval.tasks[k].auc == Approx(cpu_eval.tasks[k].auc).margin(1e-2));
  }

  // Saved on CUDA, restored on the CPU: the very values (a checkpoint holds host copies).
  const std::filesystem::path folder =
      std::filesystem::temp_directory_path() / ("drgrad_engine_paths_gpu_" + c.name);
  std::filesystem::create_directories(folder);
  const std::string from_gpu = (folder / "from_gpu.ckpt").string();
  const std::string from_cpu = (folder / "from_cpu.ckpt").string();
  gpu->save_checkpoint(from_gpu);
  cpu->save_checkpoint(from_cpu);
  auto cpu_restored = make_trainer(c, data, Device::cpu());
  cpu_restored->restore_checkpoint(from_gpu);
  CHECK(parameter_values(*cpu_restored) == parameter_values(*gpu));
  CHECK(cpu_restored->step() == kSteps);

  // Saved on the CPU, resumed on CUDA: the same values, and the next step agrees with the CPU's.
  auto gpu_resumed = make_trainer(c, data, Device::cuda(0));
  gpu_resumed->restore_checkpoint(from_cpu);
  CHECK(parameter_values(*gpu_resumed) == parameter_values(*cpu));
  if (c.strategy == "drgrad") CHECK(gpu_resumed->model().mu_own() == cpu->model().mu_own());
  const std::vector<double> expected = cpu->train_step(data.batches.front());
  const std::vector<double> got = gpu_resumed->train_step(data.batches.front());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    CHECK(got[k] == Approx(expected[k]).epsilon(1e-4));
  }
  check_close(parameter_values(*cpu), parameter_values(*gpu_resumed), *cpu);
  std::filesystem::remove_all(folder);
}

}  // namespace

TEST_CASE("CUDA engine paths: each backbone, strategy and embedding backward against the CPU",
          "[gpu][engine]") {
  DRGRAD_REQUIRE_GPU();
  using engine::BackboneKind;
  using engine::EmbeddingBackward;
  const std::vector<PathCase> cases = {
      {"shared_bottom", BackboneKind::kSharedBottom, "none", EmbeddingBackward::kHostPlan,
       kernels::Pooling::kSum, false},
      {"ple_device_plan", BackboneKind::kPle, "none", EmbeddingBackward::kDevicePlan,
       kernels::Pooling::kMean, false},
      {"drgrad_personal_gate", BackboneKind::kMmoe, "drgrad",
       EmbeddingBackward::kFastNondeterministic, kernels::Pooling::kMean, true},
      {"mmoe_pcgrad_device_plan", BackboneKind::kMmoe, "pcgrad", EmbeddingBackward::kDevicePlan,
       kernels::Pooling::kSum, false},
      {"ple_cagrad", BackboneKind::kPle, "cagrad", EmbeddingBackward::kHostPlan,
       kernels::Pooling::kMean, false},
  };
  for (const PathCase& c : cases) {
    INFO("case " << c.name);
    check_path(c);
  }
}
