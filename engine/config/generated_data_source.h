// Generator options from the [data] section, so that the trainer and tests build the same
// training and evaluation sets from one config.
#pragma once

#include "engine/config/config.h"
#include "io/generators/drgrad_synthetic_generator.h"
#include "io/generators/mmoe_generator.h"

namespace drgrad::engine {

// Training samples come from sample stream 0 of data.seed, evaluation samples from stream 1:
// independent samples of the same task (same weights and binary thresholds).
enum class DataSplit { kTrain, kEval };

// data.train_samples or data.eval_samples, seed, correlation, input_dim, sparse_slots,
// sparse_vocabulary, binary_labels; the other generator options keep the paper's defaults.
io::MmoeGeneratorOptions mmoe_generator_options(const DataConfig& data, DataSplit split);
// The sample count, seed, cos_theta, sparse_vocabulary and binary_labels; 32 features of which
// the last 6 are sparse, as in the paper (input_dim and sparse_slots do not apply).
io::DrgradGeneratorOptions drgrad_generator_options(const DataConfig& data, DataSplit split);

// The split's samples from data.generator. Throws ConfigError when data.source is not
// "generated".
io::GeneratedData generate_configured_data(const DataConfig& data, DataSplit split);

}  // namespace drgrad::engine
