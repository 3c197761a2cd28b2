// The drgrad subcommands; each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace drgrad::tools {

struct TrainArguments {
  std::string config_path;
  std::vector<std::string> overrides;
  std::string resume;  // checkpoint path, or "latest" for the run directory's newest
};

int run_demo(bool quick);
int run_train(const TrainArguments& arguments);
int run_eval(const std::string& config_path, const std::vector<std::string>& overrides,
             const std::string& checkpoint);

}  // namespace drgrad::tools
