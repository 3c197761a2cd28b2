// Trainer behaviour: determinism, exact resume from a checkpoint, refusal of damaged checkpoints,
// and a clear stop on a NaN loss without writing a checkpoint or changing any parameter.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "engine/multitask/drgrad_strategy.h"
#include "engine/multitask/surgery_strategy.h"
#include "engine/train/checkpoint.h"
#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"

using namespace drgrad;
using namespace drgrad::engine;
namespace fs = std::filesystem;

namespace {
struct Scenario {
  io::GeneratedData train, eval;
  ModelSpec model;
  OptimizerSpec optimizer;
  TrainingOptions options;

  Scenario() {
    io::MmoeGeneratorOptions data;
    data.num_samples = 300;
    data.input_dim = 8;
    data.sparse_slots = 2;
    data.sparse_vocabulary = 20;
    train = io::generate_mmoe(data);
    data.num_samples = 100;
    data.sample_stream = 1;
    eval = io::generate_mmoe(data);
    model.num_dense = 8;
    for (const auto& slot : train.schema.sparse_slots) {
      model.slots.push_back(
          {slot.name, slot.vocabulary_size, 4, kernels::Pooling::kMean, OutOfRange::kError});
    }
    model.tasks = {{"y1", 0, TaskType::kBinary, 1.0, 2.0}, {"y2", 1, TaskType::kBinary, 0.5, 1.0}};
    model.backbone = BackboneKind::kMmoe;
    model.num_experts = 3;
    model.expert_units = {8};
    model.tower_units = {4};
    optimizer.learning_rate = 0.01;
    options.batch_size = 32;
    options.epochs = 3;
    options.show_progress = false;
    options.save_checkpoints = false;
  }

  Trainer make(TrainingOptions override_options) const {
    return Trainer(model, optimizer, override_options,
                   std::make_unique<InMemoryBatchStream>(train.schema, train.batch,
                                                         override_options.batch_size, true, 5),
                   std::make_unique<InMemoryBatchStream>(eval.schema, eval.batch, 64, false, 5));
  }
};

std::vector<std::vector<float>> parameters_of(Trainer& trainer) {
  std::vector<std::vector<float>> values;
  for (const auto& parameter : trainer.model().parameters().all()) {
    values.push_back(parameter->value.to_vector<float>());
  }
  return values;
}

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("drgrad_trainer_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
}  // namespace

TEST_CASE("training is deterministic for a seed and learns", "[trainer]") {
  Scenario scenario;
  Trainer first = scenario.make(scenario.options);
  Trainer second = scenario.make(scenario.options);
  const Evaluation a = first.fit();
  const Evaluation b = second.fit();
  CHECK(first.step() == 30);  // 3 epochs of ceil(300 / 32) = 10 batches
  CHECK(parameters_of(first) == parameters_of(second));
  REQUIRE(a.tasks.size() == 2);
  CHECK(a.tasks[0].auc == b.tasks[0].auc);
  CHECK(a.tasks[0].auc > 0.6);  // well above chance after 30 small steps
}

TEST_CASE("resuming from a checkpoint continues exactly like an uninterrupted run",
          "[trainer][checkpoint]") {
  Scenario scenario;
  for (const auto kind : {OptimizerKind::kAdam, OptimizerKind::kSgd, OptimizerKind::kAdagrad}) {
    scenario.optimizer.kind = kind;
    scenario.optimizer.learning_rate = kind == OptimizerKind::kSgd ? 0.05 : 0.01;
    Trainer uninterrupted = scenario.make(scenario.options);
    uninterrupted.fit();

    const fs::path dir = scratch_dir("resume");
    TrainingOptions partial = scenario.options;
    partial.steps = 13;  // stops mid-epoch (epoch 2, batch 3)
    Trainer first_half = scenario.make(partial);
    first_half.fit();
    const std::string path = (dir / "mid.ckpt").string();
    first_half.save_checkpoint(path);

    Trainer resumed = scenario.make(scenario.options);
    resumed.restore_checkpoint(path);
    CHECK(resumed.step() == 13);
    resumed.fit();
    CHECK(resumed.step() == uninterrupted.step());
    CHECK(parameters_of(resumed) == parameters_of(uninterrupted));
  }
}

TEST_CASE("run checkpoints are kept, pruned and pointed to by 'latest'", "[trainer][checkpoint]") {
  Scenario scenario;
  TrainingOptions options = scenario.options;
  options.run_dir = scratch_dir("run").string();
  options.save_checkpoints = true;
  options.checkpoint_every = 4;
  options.keep_checkpoints = 2;
  Trainer trainer = scenario.make(options);
  trainer.fit();
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(fs::path(options.run_dir) / "checkpoints")) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"latest", "step-000000028.ckpt", "step-000000030.ckpt"});
  std::ifstream latest(fs::path(options.run_dir) / "checkpoints" / "latest");
  std::string pointed;
  latest >> pointed;
  CHECK(pointed == "step-000000030.ckpt");
  CHECK(fs::exists(fs::path(options.run_dir) / "metrics.jsonl"));
}

TEST_CASE("damaged checkpoints are refused with a message naming the problem",
          "[trainer][checkpoint]") {
  Scenario scenario;
  Trainer trainer = scenario.make(scenario.options);
  const fs::path dir = scratch_dir("damaged");
  const std::string path = (dir / "good.ckpt").string();
  trainer.save_checkpoint(path);
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  auto write = [&](const std::string& name, const std::string& content) {
    const std::string target = (dir / name).string();
    std::ofstream(target, std::ios::binary) << content;
    return target;
  };
  SECTION("flipped byte in the body") {
    std::string damaged = bytes;
    damaged[damaged.size() / 2] ^= 0x40;
    CHECK_THROWS_WITH(trainer.restore_checkpoint(write("flipped.ckpt", damaged)),
                      Catch::Contains("CRC") && Catch::Contains("flipped.ckpt"));
  }
  SECTION("truncated file") {
    CHECK_THROWS_WITH(
        trainer.restore_checkpoint(write("cut.ckpt", bytes.substr(0, bytes.size() - 10))),
        Catch::Contains("truncated"));
  }
  SECTION("not a checkpoint") {
    CHECK_THROWS_WITH(trainer.restore_checkpoint(write("other.ckpt", "hello world, not ours")),
                      Catch::Contains("not a drgrad checkpoint"));
  }
  SECTION("missing file") {
    CHECK_THROWS_WITH(trainer.restore_checkpoint((dir / "absent.ckpt").string()),
                      Catch::Contains("cannot open") && Catch::Contains("absent.ckpt"));
  }
  SECTION("another model") {
    Scenario other;
    other.model.num_experts = 4;
    Trainer different = other.make(other.options);
    CHECK_THROWS_WITH(different.restore_checkpoint(path), Catch::Contains("different model"));
  }
}

TEST_CASE("a NaN loss stops training with advice and writes no checkpoint", "[trainer]") {
  Scenario scenario;
  scenario.train.batch.labels[7] = std::nanf("");
  TrainingOptions options = scenario.options;
  options.run_dir = scratch_dir("nan").string();
  options.save_checkpoints = true;
  Trainer trainer = scenario.make(options);
  CHECK_THROWS_WITH(trainer.fit(),
                    Catch::Contains("became nan") && Catch::Contains("learning_rate"));
  CHECK_FALSE(fs::exists(fs::path(options.run_dir) / "checkpoints"));
}

TEST_CASE("a non-finite dense feature is refused with its position", "[trainer]") {
  Scenario scenario;
  scenario.train.batch.dense[5] = std::nanf("");
  TrainingOptions options = scenario.options;
  options.epochs = 1;
  Trainer trainer = scenario.make(options);
  CHECK_THROWS_WITH(trainer.fit(), Catch::Contains("dense feature") && Catch::Contains("nan"));
}

TEST_CASE("DRGrad runs resume exactly, mixing weights and router state included",
          "[trainer][checkpoint][router]") {
  Scenario scenario;
  scenario.model.split.enabled = true;
  auto with_drgrad = [&](TrainingOptions options) {
    Trainer trainer = scenario.make(options);
    DrgradSettings settings;
    settings.router.form = RouterForm::kPaired;
    settings.rho = 0.9;
    trainer.set_strategy(std::make_unique<DrgradStrategy>(settings, trainer.model()));
    return trainer;
  };
  Trainer uninterrupted = with_drgrad(scenario.options);
  uninterrupted.fit();
  TrainingOptions partial = scenario.options;
  partial.steps = 17;
  Trainer first_half = with_drgrad(partial);
  first_half.fit();
  const std::string path = (scratch_dir("drgrad_resume") / "mid.ckpt").string();
  first_half.save_checkpoint(path);
  Trainer resumed = with_drgrad(scenario.options);
  resumed.restore_checkpoint(path);
  CHECK(resumed.model().mu_own() == first_half.model().mu_own());
  resumed.fit();
  CHECK(parameters_of(resumed) == parameters_of(uninterrupted));
  CHECK(resumed.model().mu_own() == uninterrupted.model().mu_own());
  CHECK(uninterrupted.model().mu_own() != 0.5);
}

namespace {
// Every parameter and optimizer state tensor, by name, on the host.
std::map<std::string, std::vector<float>> training_state_of(Trainer& trainer) {
  std::map<std::string, std::vector<float>> state;
  for (const auto& parameter : trainer.model().parameters().all()) {
    state["param/" + parameter->name] = parameter->value.to_vector<float>();
  }
  for (const auto& [name, tensor] : trainer.optimizer().state()) {
    state["optim/" + name] = tensor.to_vector<float>();
  }
  return state;
}
}  // namespace

TEST_CASE("a NaN batch is refused on the device: parameters and optimizer state stay as before",
          "[trainer][nan]") {
  Scenario scenario;
  const std::string strategy = GENERATE(std::string("none"), std::string("drgrad"),
                                        std::string("pcgrad"), std::string("cagrad"));
  CAPTURE(strategy);
  scenario.model.split.enabled = strategy == "drgrad";  // the surgery runs on plain backbones
  Trainer trainer = scenario.make(scenario.options);
  if (strategy == "drgrad") {
    trainer.set_strategy(std::make_unique<DrgradStrategy>(DrgradSettings{}, trainer.model()));
  } else if (strategy != "none") {
    GradientSurgeryOptions surgery;
    surgery.method = strategy == "pcgrad" ? SurgeryMethod::kPcgrad : SurgeryMethod::kCagrad;
    trainer.set_strategy(std::make_unique<SurgeryStrategy>(trainer.model().context(), surgery));
  }
  InMemoryBatchStream stream(scenario.train.schema, scenario.train.batch, 32, false, 5);
  for (int step = 0; step < 3; ++step) {
    const auto losses = trainer.train_step(*stream.next());
    for (const double loss : losses) CHECK(std::isfinite(loss));
  }
  const auto before = training_state_of(trainer);
  const double mu_own_before = trainer.model().mu_own();  // DRGrad's mixing weight (0.5 else)
  const std::int64_t optimizer_steps = trainer.optimizer().steps_taken();
  io::Batch bad = *stream.next();
  bad.labels[3] = std::nanf("");  // one sample's first label: one non-finite sample loss
  CHECK_THROWS_WITH(trainer.train_step(bad), Catch::Contains("became nan at step 4") &&
                                                 Catch::Contains("1 of 64 sample losses") &&
                                                 Catch::Contains("refused on the device"));
  CHECK(trainer.step() == 3);
  CHECK(trainer.optimizer().steps_taken() == optimizer_steps);
  const auto after = training_state_of(trainer);
  CHECK(trainer.model().mu_own() == mu_own_before);  // the router's updater learnt nothing either
  REQUIRE(after.size() == before.size());
  for (const auto& [name, values] : before) {
    CAPTURE(name);
    CHECK(after.at(name) == values);
  }
  // The refused step leaves the trainer able to go on with good data.
  const auto losses = trainer.train_step(*stream.next());
  for (const double loss : losses) CHECK(std::isfinite(loss));
  CHECK(trainer.step() == 4);
}

TEST_CASE("fit stops at the step whose loss was not finite, before its checkpoint",
          "[trainer][nan][checkpoint]") {
  Scenario scenario;
  const std::int64_t label_columns =
      static_cast<std::int64_t>(scenario.train.batch.labels.size()) / scenario.train.batch.size;
  scenario.train.batch.labels[(2 * 32 + 1) * label_columns] = std::nanf("");  // in batch 3
  TrainingOptions options = scenario.options;
  options.run_dir = scratch_dir("nan_fit").string();
  options.save_checkpoints = true;
  options.checkpoint_every = 1;
  options.keep_checkpoints = 0;
  Trainer trainer(scenario.model, scenario.optimizer, options,
                  std::make_unique<InMemoryBatchStream>(scenario.train.schema, scenario.train.batch,
                                                        32, false, 5),
                  nullptr);
  CHECK_THROWS_WITH(trainer.fit(),
                    Catch::Contains("at step 3") && Catch::Contains("refused on the device"));
  CHECK(trainer.step() == 2);
  const fs::path checkpoints = fs::path(options.run_dir) / "checkpoints";
  CHECK(fs::exists(checkpoints / "step-000000002.ckpt"));
  CHECK_FALSE(fs::exists(checkpoints / "step-000000003.ckpt"));
}

TEST_CASE("training.cuda_graph on the CPU is refused with what to change", "[trainer]") {
  Scenario scenario;
  TrainingOptions options = scenario.options;
  options.cuda_graph = true;
  Trainer trainer = scenario.make(options);
  CHECK_THROWS_WITH(trainer.fit(), Catch::Contains("CUDA device") &&
                                       Catch::Contains("training.cuda_graph = false"));
  CHECK(trainer.step() == 0);
  CHECK(trainer.captured_step_graphs() == 0);
}

TEST_CASE("DRGrad telemetry gets one line every telemetry_every steps", "[trainer][router]") {
  Scenario scenario;
  scenario.model.split.enabled = true;
  TrainingOptions options = scenario.options;
  options.steps = 7;
  Trainer trainer = scenario.make(options);
  const fs::path path = scratch_dir("telemetry") / "drgrad_telemetry.jsonl";
  DrgradSettings settings;
  settings.telemetry_every = 2;
  settings.telemetry_path = path.string();
  trainer.set_strategy(std::make_unique<DrgradStrategy>(settings, trainer.model()));
  trainer.fit();
  std::ifstream file(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  REQUIRE(lines.size() == 3);  // steps 2, 4 and 6
  CHECK_THAT(lines[0], Catch::StartsWith("{\"step\": 2,"));
  CHECK_THAT(lines[2], Catch::StartsWith("{\"step\": 6,"));
  CHECK_THAT(lines[2], Catch::Contains("\"mu_own\""));
}
