// The drgrad subcommands; each returns the process exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace drgrad::tools {

struct TrainArguments {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string resume;  // checkpoint path, or "latest" for the run directory's newest
};

struct ConvertArguments {
  std::vector<std::string> inputs;
  std::string output;
  std::string csv_schema;      // CSV inputs: column roles, label rules, split
  std::string example_schema;  // TFRecord inputs: Example feature mapping
  std::string prefix = "data";
  std::int64_t samples_per_shard = 1 << 20;
  std::int64_t samples_per_block = 4096;
  int zstd_level = 3;  // 0: no compression
};

struct SynthArguments {
  std::string generator = "mmoe";
  std::string output;
  std::int64_t train_samples = 100000;
  std::int64_t eval_samples = 20000;
  std::uint64_t seed = 1;
  double correlation = 0.5;
  std::int64_t sparse_slots = 4;
  double cos_theta = 0.5;
  int zstd_level = 3;
};

int run_demo(bool quick);
int run_convert(const ConvertArguments& arguments);
int run_synth(const SynthArguments& arguments);
int run_inspect(const std::vector<std::string>& files, bool verify);
int run_train(const TrainArguments& arguments);
int run_eval(const std::string& config_path, const std::vector<std::string>& overrides,
             const std::string& checkpoint);

}  // namespace drgrad::tools
