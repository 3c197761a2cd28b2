// `drgrad train`, `drgrad eval` and `drgrad demo`.
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "engine/config/config.h"
#include "engine/core/log.h"
#include "engine/train/run_setup.h"
#include "io/util/atomic_file.h"
#include "tools/drgrad/commands.h"

namespace drgrad::tools {

namespace fs = std::filesystem;
using namespace drgrad::engine;

namespace {
std::string resolve_resume(const std::string& resume, const std::string& run_dir) {
  if (resume != "latest") return resume;
  const fs::path latest = fs::path(run_dir) / "checkpoints" / "latest";
  std::ifstream in(latest);
  std::string name;
  if (!(in >> name)) {
    throw std::runtime_error("--resume latest: no checkpoint recorded in " + latest.string() +
                             "; train once first or pass a checkpoint path");
  }
  return (fs::path(run_dir) / "checkpoints" / name).string();
}

void print_model_summary(const RunSetup& setup, std::int64_t parameters) {
  std::cout << "model " << backbone_name(setup.model.backbone) << ": " << setup.model.tasks.size()
            << " tasks, " << setup.model.num_dense << " dense + " << setup.model.slots.size()
            << " sparse inputs, " << parameters << " parameters, "
            << "device " << setup.training.device.to_string() << "\n";
}
}  // namespace

int run_train(const TrainArguments& arguments) {
  const Config config = load_config(arguments.config_path, arguments.overrides);
  RunSetup setup = prepare_run(config);
  fs::create_directories(config.output.run_dir);
  io::write_file_atomically((fs::path(config.output.run_dir) / "config.toml").string(),
                            to_toml(config));
  Trainer trainer(setup.model, setup.optimizer, setup.training, std::move(setup.train_data),
                  std::move(setup.eval_data));
  trainer.set_strategy(make_strategy(config, trainer.model(), config.output.run_dir));
  print_model_summary(setup, trainer.model().parameters().total_elements());
  if (!arguments.resume.empty()) {
    const std::string path = resolve_resume(arguments.resume, config.output.run_dir);
    trainer.restore_checkpoint(path);
    std::cout << "resumed from " << path << " at step " << trainer.step() << "\n";
  }
  const Evaluation evaluation = trainer.fit();
  std::cout << "trained " << trainer.step() << " steps, " << std::fixed << std::setprecision(0)
            << trainer.samples_per_second() << " samples/s\n";
  if (!evaluation.tasks.empty()) std::cout << format_evaluation(evaluation);
  std::cout << "run directory: " << config.output.run_dir << "\n";
  return 0;
}

int run_eval(const std::string& config_path, const std::vector<std::string>& overrides,
             const std::string& checkpoint) {
  const Config config = load_config(config_path, overrides);
  RunSetup setup = prepare_run(config);
  if (!setup.eval_data) {
    throw std::runtime_error("the config has no evaluation data (data.eval_samples = 0)");
  }
  setup.training.run_dir.clear();
  setup.training.show_progress = false;
  Trainer trainer(setup.model, setup.optimizer, setup.training, std::move(setup.train_data),
                  std::move(setup.eval_data));
  trainer.set_strategy(make_strategy(config, trainer.model(), ""));
  trainer.restore_checkpoint(checkpoint);
  const Evaluation evaluation = trainer.evaluate();
  std::cout << "checkpoint " << checkpoint << " (step " << trainer.step() << ")\n"
            << format_evaluation(evaluation);
  return 0;
}

int run_demo(bool quick) {
  // Generated data (MMoE generator, task correlation 0.5, with sparse slots so the embedding
  // path runs too); three models on the same data and seed: Shared-Bottom, MMoE, and DRGrad
  // (MMoE backbone, split primary towers, router and updater).
  const auto stamp = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::ostringstream run_root;
  run_root << "runs/demo-" << std::put_time(std::gmtime(&stamp), "%Y%m%d-%H%M%S");
  struct DemoModel {
    std::string backbone, title, strategy;
  };
  const std::vector<DemoModel> models = {{"shared_bottom", "Shared-Bottom", "none"},
                                         {"mmoe", "MMoE", "none"},
                                         {"mmoe", "DRGrad", "drgrad"}};
  std::vector<std::pair<std::string, Evaluation>> results;
  std::vector<double> rates;
  for (const auto& [backbone, title, strategy] : models) {
    Config config;
    config.data.correlation = 0.5;
    config.data.sparse_slots = 4;
    config.data.train_samples = quick ? 4000 : 40000;
    config.data.eval_samples = quick ? 2000 : 10000;
    config.training.epochs = quick ? 1 : 3;
    config.training.batch_size = 256;
    config.training.log_every = 100;
    config.model.backbone = parse_backbone(backbone);
    config.strategy.name = strategy;
    config.model.split_towers = strategy == "drgrad";
    config.output.run_dir = run_root.str() + "/" + (strategy == "none" ? backbone : strategy);
    validate_config(config);
    RunSetup setup = prepare_run(config);
    setup.training.label = title;
    fs::create_directories(config.output.run_dir);
    io::write_file_atomically((fs::path(config.output.run_dir) / "config.toml").string(),
                              to_toml(config));
    Trainer trainer(setup.model, setup.optimizer, setup.training, std::move(setup.train_data),
                    std::move(setup.eval_data));
    trainer.set_strategy(make_strategy(config, trainer.model(), config.output.run_dir));
    std::cout << title << ": ";
    print_model_summary(setup, trainer.model().parameters().total_elements());
    std::cout.flush();
    results.emplace_back(title, trainer.fit());
    rates.push_back(trainer.samples_per_second());
  }
  std::cout << "\nper-task metrics on " << results.front().second.tasks.front().samples
            << " held-out samples (MMoE generator, task correlation 0.5):\n\n";
  std::cout << std::left << std::setw(16) << "model" << std::setw(10) << "task" << std::right
            << std::setw(9) << "AUC" << std::setw(10) << "log-loss" << std::setw(14)
            << "train samp/s"
            << "\n";
  for (std::size_t m = 0; m < results.size(); ++m) {
    for (const auto& task : results[m].second.tasks) {
      std::cout << std::left << std::setw(16) << results[m].first << std::setw(10) << task.name
                << std::right << std::fixed << std::setprecision(4) << std::setw(9) << task.auc
                << std::setw(10) << task.log_loss << std::setw(14) << std::setprecision(0)
                << rates[m] << "\n";
    }
  }
  std::cout << "\nrun directory: " << run_root.str()
            << " (config.toml, metrics.jsonl and checkpoints of each model)\n";
  return 0;
}

}  // namespace drgrad::tools
