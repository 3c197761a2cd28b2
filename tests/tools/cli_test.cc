// End-to-end checks of the drgrad program: the demo, train / resume / eval from a config, and
// the messages a user sees for broken configs.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {
struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult run_cli(const std::string& arguments, const fs::path& directory) {
  const std::string command =
      "cd '" + directory.string() + "' && '" + DRGRAD_CLI_PATH + "' " + arguments + " 2>&1";
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe) != nullptr) result.output += buffer.data();
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("drgrad_cli_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

const char* kSmallConfig = R"([data]
train_samples = 1500
eval_samples = 500
input_dim = 12
sparse_slots = 2

[model]
backbone = "mmoe"
num_experts = 3
expert_units = [16]
tower_units = [8]

[training]
batch_size = 64
epochs = 2
checkpoint_every = 10

[output]
run_dir = "run"
)";
}  // namespace

TEST_CASE("drgrad demo trains two models and prints per-task metrics", "[cli]") {
  const fs::path dir = scratch("demo");
  const CommandResult result = run_cli("demo --quick", dir);
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Catch::Contains("Shared-Bottom") && Catch::Contains("MMoE") &&
                                Catch::Contains("AUC") && Catch::Contains("run directory: runs/"));
  CHECK(fs::exists(dir / "runs"));
}

TEST_CASE("drgrad train, resume and eval from a config file", "[cli]") {
  const fs::path dir = scratch("train");
  write_file(dir / "small.toml", kSmallConfig);
  const CommandResult trained = run_cli("train --config small.toml", dir);
  INFO(trained.output);
  REQUIRE(trained.exit_code == 0);
  CHECK_THAT(trained.output,
             Catch::Contains("trained 48 steps") && Catch::Contains("y1") && Catch::Contains("y2"));
  CHECK(fs::exists(dir / "run" / "config.toml"));
  CHECK(fs::exists(dir / "run" / "checkpoints" / "step-000000048.ckpt"));

  // Three more epochs from the latest checkpoint, overriding the epoch count.
  const CommandResult resumed =
      run_cli("train --config small.toml --set training.epochs=3 --resume latest", dir);
  INFO(resumed.output);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.output,
             Catch::Contains("resumed from") && Catch::Contains("trained 72 steps"));

  const CommandResult evaluated =
      run_cli("eval --config small.toml --checkpoint run/checkpoints/step-000000072.ckpt", dir);
  INFO(evaluated.output);
  CHECK(evaluated.exit_code == 0);
  CHECK_THAT(evaluated.output, Catch::Contains("step 72") && Catch::Contains("AUC"));
}

TEST_CASE("drgrad reports broken configs with the key and the line", "[cli]") {
  const fs::path dir = scratch("errors");
  SECTION("unknown key") {
    write_file(dir / "bad.toml", "[training]\nbatch_size = 64\nbatchsize = 32\n");
    const CommandResult result = run_cli("train --config bad.toml", dir);
    CHECK(result.exit_code != 0);
    CHECK_THAT(result.output, Catch::Contains("batchsize") && Catch::Contains("bad.toml:3"));
  }
  SECTION("wrong type") {
    write_file(dir / "bad.toml", "[training]\n\nbatch_size = \"big\"\n");
    const CommandResult result = run_cli("train --config bad.toml", dir);
    CHECK(result.exit_code != 0);
    CHECK_THAT(result.output, Catch::Contains("batch_size") && Catch::Contains("bad.toml:3"));
  }
  SECTION("bad override") {
    write_file(dir / "ok.toml", "[training]\nbatch_size = 64\n");
    const CommandResult result = run_cli("train --config ok.toml --set training.nope=1", dir);
    CHECK(result.exit_code != 0);
    CHECK_THAT(result.output, Catch::Contains("training.nope"));
  }
  SECTION("missing file") {
    const CommandResult result = run_cli("train --config absent.toml", dir);
    CHECK(result.exit_code != 0);
    CHECK_THAT(result.output, Catch::Contains("absent.toml"));
  }
  SECTION("missing checkpoint") {
    write_file(dir / "small.toml", kSmallConfig);
    const CommandResult result = run_cli("eval --config small.toml --checkpoint nope.ckpt", dir);
    CHECK(result.exit_code != 0);
    CHECK_THAT(result.output, Catch::Contains("nope.ckpt"));
  }
}

TEST_CASE("drgrad train and eval refuse a CUDA device this machine lacks, naming the way out",
          "[cli]") {
  // No machine has 4096 GPUs, so this runs the same check with or without a device: the run
  // stops before the data, the run directory or the first CUDA call (which used to end in
  // "cudaErrorInsufficientDriver ... in cudaSetDevice" without a GPU).
  const fs::path dir = scratch("device");
  write_file(dir / "small.toml", kSmallConfig);
  const CommandResult trained =
      run_cli("train --config small.toml --set training.device=cuda:4096", dir);
  INFO(trained.output);
  CHECK(trained.exit_code != 0);
  CHECK_THAT(trained.output, Catch::Contains("training.device = \"cuda:4096\"") &&
                                 Catch::Contains("training.device = \"cpu\""));
  CHECK_FALSE(fs::exists(dir / "run"));
  const CommandResult evaluated =
      run_cli("eval --config small.toml --set training.device=cuda:4096 --checkpoint x.ckpt", dir);
  INFO(evaluated.output);
  CHECK(evaluated.exit_code != 0);
  CHECK_THAT(evaluated.output, Catch::Contains("training.device = \"cuda:4096\""));
}
