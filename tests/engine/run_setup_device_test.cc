// training.device checked where a run starts: a CUDA device that this build or machine cannot
// provide is refused by prepare_run with a message naming the key and the way out, not by the
// first CUDA call's runtime error.
#include <catch2/catch.hpp>

#include <string>

#include "engine/train/run_setup.h"
#include "kernels/core/device.h"

using namespace drgrad;
using namespace drgrad::engine;
using Catch::Contains;

namespace {

template <typename Action>
std::string config_error_of(Action&& action) {
  try {
    action();
  } catch (const ConfigError& error) {
    return error.what();
  }
  FAIL("expected a ConfigError");
  return "";
}

Config small_generated_config(kernels::Device device) {
  Config config;
  config.data.train_samples = 64;
  config.data.eval_samples = 0;
  config.training.batch_size = 32;
  config.training.device = device;
  return config;
}

}  // namespace

TEST_CASE("require_usable_device accepts the CPU", "[run_setup][device]") {
  CHECK_NOTHROW(require_usable_device(kernels::Device::cpu()));
  const RunSetup setup = prepare_run(small_generated_config(kernels::Device::cpu()));
  CHECK(setup.training.device == kernels::Device::cpu());
}

TEST_CASE("a CUDA index past the devices present is refused with the count and the way out",
          "[run_setup][device]") {
  const int count = kernels::cuda_device_count();
  const kernels::Device missing = kernels::Device::cuda(count);
  const std::string message = config_error_of([&] { require_usable_device(missing); });
  CHECK_THAT(message, Contains("training.device = \"" + missing.to_string() + "\""));
  CHECK_THAT(message, Contains("training.device = \"cpu\""));
  if (kernels::built_with_cuda() && count > 0) {
    CHECK_THAT(message, Contains(std::to_string(count) + " CUDA device(s)"));
  }
  // prepare_run refuses it before any data is generated or any CUDA call is made.
  const std::string from_prepare =
      config_error_of([&] { prepare_run(small_generated_config(missing)); });
  CHECK(from_prepare == message);
}

TEST_CASE("training.device = cuda without a usable device names the problem",
          "[run_setup][device]") {
  if (kernels::cuda_device_count() > 0) {
    CHECK_NOTHROW(require_usable_device(kernels::Device::cuda(0)));
    return;
  }
  const std::string message =
      config_error_of([] { require_usable_device(kernels::Device::cuda(0)); });
  CHECK_THAT(message, Contains("training.device = \"cuda:0\""));
  CHECK_THAT(message, Contains("--set training.device=cpu"));
  if (kernels::built_with_cuda()) {
    CHECK_THAT(message, Contains("no usable CUDA device"));
  } else {
    CHECK_THAT(message, Contains("no CUDA backend"));
  }
}
