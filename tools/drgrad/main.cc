// Entry point of the drgrad command-line program: parses the subcommand and turns every error
// into a message and an exit code (only main decides to exit).
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "engine/config/config.h"
#include "tools/drgrad/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"drgrad: multi-task recommendation training with DRGrad gradient routing"};
  app.require_subcommand(1);

  auto* demo = app.add_subcommand(
      "demo", "Train Shared-Bottom and MMoE on generated data and print per-task metrics");
  bool quick = false;
  demo->add_flag("--quick", quick, "A smaller run (seconds), for smoke tests");

  drgrad::tools::TrainArguments train_arguments;
  auto* train = app.add_subcommand("train", "Train the model a config file describes");
  train->add_option("--config", train_arguments.config_path, "TOML config file")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--set", train_arguments.overrides,
                    "Override a config key, e.g. --set training.batch_size=256 (repeatable)");
  train->add_option("--resume", train_arguments.resume,
                    "Continue from a checkpoint file, or 'latest' in the run directory");

  std::string eval_config, checkpoint;
  std::vector<std::string> eval_overrides;
  auto* eval = app.add_subcommand("eval", "Evaluate a checkpoint on the config's evaluation data");
  eval->add_option("--config", eval_config, "TOML config file")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--set", eval_overrides, "Override a config key (repeatable)");
  eval->add_option("--checkpoint", checkpoint, "Checkpoint file")->required();

  drgrad::tools::ConvertArguments convert_arguments;
  auto* convert = app.add_subcommand("convert", "Convert CSV or TFRecord/Example files to shards");
  convert
      ->add_option("inputs", convert_arguments.inputs,
                   "Input files (CSV, plain or gzip; or TFRecord)")
      ->required()
      ->check(CLI::ExistingFile);
  convert->add_option("--output", convert_arguments.output, "Output folder")->required();
  auto* csv_schema = convert->add_option("--schema", convert_arguments.csv_schema,
                                         "CSV column spec (TOML), e.g. configs/census_schema.toml");
  auto* example_schema = convert->add_option("--example-schema", convert_arguments.example_schema,
                                             "TFRecord inputs: Example feature mapping (TOML)");
  csv_schema->excludes(example_schema);
  convert->add_option("--prefix", convert_arguments.prefix, "TFRecord inputs: output name prefix");
  convert->add_option("--samples-per-shard", convert_arguments.samples_per_shard,
                      "Samples per output shard");
  convert->add_option("--samples-per-block", convert_arguments.samples_per_block,
                      "Samples per compressed block (record)");
  convert->add_option("--zstd-level", convert_arguments.zstd_level,
                      "zstd level per block, 0 for no compression");

  drgrad::tools::SynthArguments synth_arguments;
  auto* synth =
      app.add_subcommand("synth", "Write generated data (MMoE or DRGrad generator) as shards");
  synth->add_option("--generator", synth_arguments.generator, "mmoe or drgrad_synthetic");
  synth->add_option("--output", synth_arguments.output, "Output folder")->required();
  synth->add_option("--train-samples", synth_arguments.train_samples);
  synth->add_option("--eval-samples", synth_arguments.eval_samples);
  synth->add_option("--seed", synth_arguments.seed);
  synth->add_option("--correlation", synth_arguments.correlation, "mmoe: task correlation");
  synth->add_option("--sparse-slots", synth_arguments.sparse_slots, "mmoe: sparse slots");
  synth->add_option("--cos-theta", synth_arguments.cos_theta, "drgrad_synthetic: task relation");
  synth->add_option("--zstd-level", synth_arguments.zstd_level, "0 for no compression");

  std::vector<std::string> inspect_files;
  bool verify = false;
  auto* inspect = app.add_subcommand("inspect", "Describe shards or TFRecord files");
  inspect->add_option("files", inspect_files, "Shard or TFRecord files")
      ->required()
      ->check(CLI::ExistingFile);
  inspect->add_flag("--verify", verify, "Decode everything, check every CRC, print statistics");

  auto* keys =
      app.add_subcommand("keys", "Print every config key with its type, default and meaning");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  try {
    if (*demo) return drgrad::tools::run_demo(quick);
    if (*train) return drgrad::tools::run_train(train_arguments);
    if (*eval) return drgrad::tools::run_eval(eval_config, eval_overrides, checkpoint);
    if (*convert) {
      if (convert_arguments.csv_schema.empty() && convert_arguments.example_schema.empty()) {
        throw std::invalid_argument(
            "convert needs --schema (CSV inputs) or --example-schema (TFRecord inputs)");
      }
      return drgrad::tools::run_convert(convert_arguments);
    }
    if (*keys) {
      std::cout << drgrad::engine::config_reference_markdown();
      return 0;
    }
    if (*synth) return drgrad::tools::run_synth(synth_arguments);
    if (*inspect) return drgrad::tools::run_inspect(inspect_files, verify);
  } catch (const std::exception& error) {
    std::cerr << "drgrad: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
