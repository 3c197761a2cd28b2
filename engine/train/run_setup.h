// Turns a validated Config into what the trainer needs: the model and optimizer specs, the
// training options and the training and evaluation data streams.
#pragma once

#include <memory>

#include "engine/config/config.h"
#include "engine/train/trainer.h"

namespace drgrad::engine {

struct RunSetup {
  io::Schema schema;
  ModelSpec model;
  OptimizerSpec optimizer;
  TrainingOptions training;
  std::unique_ptr<BatchStream> train_data;
  std::unique_ptr<BatchStream> eval_data;
};

// The configured multi-task strategy for `model` (nullptr for "none"); DRGrad's telemetry goes
// to <run_dir>/drgrad_telemetry.jsonl when run_dir is set.
std::unique_ptr<MultiTaskStrategy> make_strategy(const Config& config,
                                                 const MultiTaskModel<float>& model,
                                                 const std::string& run_dir);

// Generates or opens the data, resolves tasks and slots against its schema and fills the specs.
// Throws ConfigError (bad combinations) or the data layer's errors (missing or corrupt files).
RunSetup prepare_run(const Config& config);

}  // namespace drgrad::engine
