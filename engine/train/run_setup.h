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

// Throws ConfigError when `device` (the value of training.device) cannot run here: a CUDA device
// in a build without the CUDA backend, with no usable CUDA device (no GPU, or no driver that
// matches the CUDA runtime), or with an index past the devices present. The message says which
// and what to do (train on the CPU or on a machine with the device). prepare_run calls it first,
// so that `drgrad train`, `eval` and `demo` fail there rather than at the first CUDA call.
void require_usable_device(const kernels::Device& device);

// Generates or opens the data, resolves tasks and slots against its schema and fills the specs.
// Throws ConfigError (bad combinations) or the data layer's errors (missing or corrupt files).
RunSetup prepare_run(const Config& config);

}  // namespace drgrad::engine
