// The trainer on CUDA: its own stream (current only while it runs), the losses read behind the
// step instead of inside it, and a NaN batch refused on the device (every update of the step
// reads the loss's non-finite count), for the plain sum, DRGrad and gradient surgery.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/multitask/drgrad_strategy.h"
#include "engine/multitask/surgery_strategy.h"
#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"
#include "kernels/core/stream.h"
#include "tests/gpu/gpu_test_support.h"

namespace {

namespace engine = drgrad::engine;
namespace io = drgrad::io;
namespace kernels = drgrad::kernels;
using drgrad::kernels::Device;

struct Setup {
  io::GeneratedData data;
  engine::ModelSpec model;
  engine::OptimizerSpec optimizer;
  engine::TrainingOptions options;

  explicit Setup(bool split) {
    io::MmoeGeneratorOptions generator;
    generator.num_samples = 256;
    generator.input_dim = 8;
    generator.sparse_slots = 2;
    generator.sparse_vocabulary = 20;
    data = io::generate_mmoe(generator);
    model.num_dense = 8;
    for (const auto& slot : data.schema.sparse_slots) {
      model.slots.push_back({slot.name, slot.vocabulary_size, 4, kernels::Pooling::kMean,
                             engine::OutOfRange::kError});
    }
    model.tasks = {{"y1", 0, engine::TaskType::kBinary, 1.0, 2.0},
                   {"y2", 1, engine::TaskType::kBinary, 0.5, 1.0}};
    model.backbone = engine::BackboneKind::kMmoe;
    model.num_experts = 3;
    model.expert_units = {8};
    model.tower_units = {4};
    model.split.enabled = split;
    optimizer.learning_rate = 0.01;
    options.batch_size = 32;
    options.steps = 8;  // one epoch of 256 samples
    options.show_progress = false;
    options.save_checkpoints = false;
    options.device = Device::cuda(0);
  }

  engine::Trainer make(const std::string& strategy) const {
    engine::Trainer trainer(
        model, optimizer, options,
        std::make_unique<engine::InMemoryBatchStream>(data.schema, data.batch, 32, false, 5),
        nullptr);
    if (strategy == "drgrad") {
      trainer.set_strategy(
          std::make_unique<engine::DrgradStrategy>(engine::DrgradSettings{}, trainer.model()));
    } else if (strategy != "none") {
      engine::GradientSurgeryOptions surgery;
      surgery.method =
          strategy == "pcgrad" ? engine::SurgeryMethod::kPcgrad : engine::SurgeryMethod::kCagrad;
      trainer.set_strategy(
          std::make_unique<engine::SurgeryStrategy>(trainer.model().context(), surgery));
    }
    return trainer;
  }
};

std::map<std::string, std::vector<float>> state_of(engine::Trainer& trainer) {
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

TEST_CASE("CUDA trainer: fit (losses read behind the step) equals step-by-step training",
          "[gpu][trainer][stream]") {
  DRGRAD_REQUIRE_GPU();
  const std::string strategy = GENERATE(std::string("none"), std::string("drgrad"));
  CAPTURE(strategy);
  const Setup setup(strategy == "drgrad");
  engine::Trainer fitted = setup.make(strategy);
  fitted.fit();
  // The trainer's stream was current only inside fit().
  CHECK(kernels::current_stream(Device::cuda(0)) == nullptr);
  CHECK(fitted.step() == setup.options.steps);

  engine::Trainer stepped = setup.make(strategy);
  engine::InMemoryBatchStream stream(setup.data.schema, setup.data.batch, 32, false, 5);
  for (std::int64_t step = 0; step < setup.options.steps; ++step) {
    const auto losses = stepped.train_step(*stream.next());
    for (const double loss : losses) CHECK(std::isfinite(loss));
  }
  CHECK(kernels::current_stream(Device::cuda(0)) == nullptr);
  // Same kernels in the same order on the same device: the same bits.
  CHECK(state_of(fitted) == state_of(stepped));
}

TEST_CASE("CUDA trainer: a NaN batch is refused on the device, nothing changes",
          "[gpu][trainer][nan]") {
  DRGRAD_REQUIRE_GPU();
  const std::string strategy = GENERATE(std::string("none"), std::string("drgrad"),
                                        std::string("pcgrad"), std::string("cagrad"));
  CAPTURE(strategy);
  const Setup setup(strategy == "drgrad");
  engine::Trainer trainer = setup.make(strategy);
  engine::InMemoryBatchStream stream(setup.data.schema, setup.data.batch, 32, false, 5);
  for (int step = 0; step < 3; ++step) trainer.train_step(*stream.next());
  const auto before = state_of(trainer);
  const double mu_own_before = trainer.model().mu_own();  // DRGrad's mixing weight (0.5 else)
  io::Batch bad = *stream.next();
  bad.labels[3] = std::nanf("");
  CHECK_THROWS_WITH(trainer.train_step(bad), Catch::Contains("became nan at step 4") &&
                                                 Catch::Contains("refused on the device"));
  CHECK(trainer.step() == 3);
  const auto after = state_of(trainer);
  CHECK(trainer.model().mu_own() == mu_own_before);  // the router's updater learnt nothing either
  REQUIRE(after.size() == before.size());
  for (const auto& [name, values] : before) {
    CAPTURE(name);
    CHECK(after.at(name) == values);
  }
  const auto losses = trainer.train_step(*stream.next());
  for (const double loss : losses) CHECK(std::isfinite(loss));
}
