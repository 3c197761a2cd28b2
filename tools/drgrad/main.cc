// Entry point of the drgrad command-line program: parses the subcommand and turns every error
// into a message and an exit code (only main decides to exit).
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  try {
    if (*demo) return drgrad::tools::run_demo(quick);
    if (*train) return drgrad::tools::run_train(train_arguments);
    if (*eval) return drgrad::tools::run_eval(eval_config, eval_overrides, checkpoint);
  } catch (const std::exception& error) {
    std::cerr << "drgrad: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
