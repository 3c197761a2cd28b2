// training.matmul_precision: parsed from the config with its allowed values, carried into the
// trainer's context, and on the CPU (where products are always fp32) one plain warning.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/core/log.h"
#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"

using namespace drgrad;
using namespace drgrad::engine;

namespace {

// Warnings logged while a Trainer is built with the given precision on the CPU.
std::vector<std::string> warnings_when_training_with(kernels::MatmulPrecision precision) {
  io::MmoeGeneratorOptions data;
  data.num_samples = 64;
  data.input_dim = 4;
  const io::GeneratedData train = io::generate_mmoe(data);
  ModelSpec model;
  model.num_dense = 4;
  model.tasks = {{"y1", 0, TaskType::kBinary, 1.0, 1.0}, {"y2", 1, TaskType::kBinary, 1.0, 1.0}};
  model.backbone = BackboneKind::kSharedBottom;
  model.bottom_units = {4};
  model.tower_units = {2};
  TrainingOptions options;
  options.batch_size = 16;
  options.steps = 1;
  options.show_progress = false;
  options.save_checkpoints = false;
  options.matmul_precision = precision;

  std::vector<std::string> warnings;
  const LogSink previous = set_log_sink([&warnings](Severity severity, const std::string& text) {
    if (severity == Severity::kWarning) warnings.push_back(text);
  });
  try {
    Trainer trainer(model, OptimizerSpec{}, options,
                    std::make_unique<InMemoryBatchStream>(train.schema, train.batch, 16, true, 1),
                    nullptr);
    trainer.fit();
  } catch (...) {
    set_log_sink(previous);
    throw;
  }
  set_log_sink(previous);
  return warnings;
}

}  // namespace

TEST_CASE("training.matmul_precision parses fp32, tf32 and bf16 and defaults to fp32",
          "[config][precision]") {
  CHECK(config_from_toml_string("", "empty.toml").training.matmul_precision ==
        kernels::MatmulPrecision::kFp32);
  const Config config =
      config_from_toml_string("[training]\nmatmul_precision = \"bf16\"\n", "run.toml");
  CHECK(config.training.matmul_precision == kernels::MatmulPrecision::kBf16);
  const Config overridden =
      config_from_toml_string("", "run.toml", {"training.matmul_precision=tf32"});
  CHECK(overridden.training.matmul_precision == kernels::MatmulPrecision::kTf32);
  CHECK_THROWS_WITH(
      config_from_toml_string("[training]\nmatmul_precision = \"fp16\"\n", "run.toml"),
      Catch::Contains("fp32") && Catch::Contains("bf16") && Catch::Contains("matmul_precision"));
}

TEST_CASE("a non-fp32 matmul precision on the CPU logs one warning and trains in fp32",
          "[trainer][precision]") {
  CHECK(warnings_when_training_with(kernels::MatmulPrecision::kFp32).empty());
  const auto warnings = warnings_when_training_with(kernels::MatmulPrecision::kTf32);
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0],
             Catch::Contains("tf32") && Catch::Contains("fp32") && Catch::Contains("CPU"));
}
