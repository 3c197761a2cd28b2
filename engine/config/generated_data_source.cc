// Maps [data] keys onto the synthetic generators' options.
#include "engine/config/generated_data_source.h"

namespace drgrad::engine {

namespace {
std::int64_t sample_count(const DataConfig& data, DataSplit split) {
  return split == DataSplit::kTrain ? data.train_samples : data.eval_samples;
}
std::uint64_t sample_stream(DataSplit split) {
  return split == DataSplit::kTrain ? 0 : 1;
}
}  // namespace

io::MmoeGeneratorOptions mmoe_generator_options(const DataConfig& data, DataSplit split) {
  io::MmoeGeneratorOptions options;
  options.num_samples = sample_count(data, split);
  options.seed = static_cast<std::uint64_t>(data.seed);
  options.sample_stream = sample_stream(split);
  options.correlation = data.correlation;
  options.input_dim = data.input_dim;
  options.binary_labels = data.binary_labels;
  options.sparse_slots = data.sparse_slots;
  options.sparse_vocabulary = data.sparse_vocabulary;
  options.noise_variance *= data.noise_scale;
  return options;
}

io::DrgradGeneratorOptions drgrad_generator_options(const DataConfig& data, DataSplit split) {
  io::DrgradGeneratorOptions options;
  options.num_samples = sample_count(data, split);
  options.seed = static_cast<std::uint64_t>(data.seed);
  options.sample_stream = sample_stream(split);
  options.cos_theta = data.cos_theta;
  options.sparse_vocabulary = data.sparse_vocabulary;
  options.binary_labels = data.binary_labels;
  options.noise_variance *= data.noise_scale;
  return options;
}

io::GeneratedData generate_configured_data(const DataConfig& data, DataSplit split) {
  if (data.source != DataSource::kGenerated) {
    throw ConfigError(std::string("data.source = \"") + data_source_name(data.source) +
                      "\": this data is read from files, not generated");
  }
  try {
    switch (data.generator) {
      case GeneratorKind::kMmoe:
        return io::generate_mmoe(mmoe_generator_options(data, split));
      case GeneratorKind::kDrgradSynthetic:
        return io::generate_drgrad_synthetic(drgrad_generator_options(data, split));
    }
  } catch (const std::invalid_argument& error) {
    throw ConfigError(std::string("[data] with generator = \"") + generator_name(data.generator) +
                      "\": " + error.what());
  }
  throw ConfigError("unknown data.generator");
}

}  // namespace drgrad::engine
