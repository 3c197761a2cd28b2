// Whole training runs on the GPU against the same runs on the CPU: a small MMoE and a small
// DRGrad model (split towers, router and updater), same seed and batches, a few hundred Adam
// steps; the parameters must start identical and end within a stated tolerance of each other.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/multitask/drgrad_strategy.h"
#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"
#include "tests/gpu/gpu_test_support.h"
#include "tests/gpu/gpu_training_support.h"

namespace {

namespace engine = drgrad::engine;
namespace io = drgrad::io;
using drgrad::kernels::Device;

constexpr std::int64_t kBatch = 64;
constexpr std::int64_t kDistinctBatches = 8;
constexpr std::int64_t kSteps = 300;

// Tolerance. CPU (OpenBLAS) and GPU (cuBLAS, the CUDA twins) add in different orders, so each
// step differs by fp32 rounding (about 1e-6 relative) and the runs drift apart as training goes
// on. Adam bounds the drift: a step moves a parameter by about the learning rate (1e-3) at most,
// whatever its gradient, so even an element whose gradient is mostly rounding noise (where the
// two runs may step in opposite directions) drifts at most like a random walk of 1e-3 steps,
// sqrt(300) * 1e-3 ~ 0.02, while an element with a real gradient follows it on both devices.
// Checks:
//  - per element, |gpu - cpu| <= 2e-2 + 1e-2 |cpu| (the random-walk bound);
//  - per parameter tensor, rms(gpu - cpu) <= 5e-3 + 1e-2 rms(cpu): the tensors as a whole must
//    agree far better than their worst element (a wrong kernel moves whole tensors by order
//    rms(cpu));
//  - the mean loss of the last 30 steps agrees to 1e-3 relative.
// Calibration without a GPU: two CPU runs, one of them with every parameter multiplied by
// (1 +- e) at random before every step (a stand-in for the devices' rounding differences), with
// e = 1e-6 and e = 1e-5 alike, ended with the worst element at 0.13 of its bound, the worst
// tensor at 0.05 of its bound and the final losses within 1e-4 relative (both models). The test
// prints the margins it met on the GPU, so that the first GPU runs can tighten these bounds.
constexpr double kElementAbsoluteTolerance = 2e-2;
constexpr double kElementRelativeTolerance = 1e-2;
constexpr double kTensorAbsoluteTolerance = 5e-3;
constexpr double kTensorRelativeTolerance = 1e-2;
constexpr double kLossRelativeTolerance = 1e-3;

struct ParityData {
  io::Schema schema;
  io::Batch all;
  std::vector<io::Batch> batches;
};

ParityData make_data() {
  io::MmoeGeneratorOptions options;
  options.num_samples = kBatch * kDistinctBatches;
  options.seed = 7;
  options.input_dim = 12;
  options.sparse_slots = 3;
  options.sparse_vocabulary = 20;
  options.binary_labels = true;
  io::GeneratedData generated = io::generate_mmoe(options);
  ParityData data{generated.schema, generated.batch, {}};
  data.batches = drgrad::gpu_test::consecutive_batches(data.all, kBatch, kDistinctBatches);
  return data;
}

engine::ModelSpec small_mmoe(const io::Schema& schema, bool drgrad) {
  engine::ModelSpec spec = drgrad::gpu_test::spec_for_schema(schema, 4);
  spec.backbone = engine::BackboneKind::kMmoe;
  spec.num_experts = 4;
  spec.expert_units = {16};
  spec.tower_units = {8};
  if (drgrad) {
    spec.split.enabled = true;
    spec.split.primary_task = 0;
    spec.split.aux_read_shared = true;
  }
  return spec;
}

struct RunResult {
  std::vector<std::string> names;
  std::vector<std::vector<float>> initial, final;
  std::vector<double> losses;  // summed over tasks, every step
};

std::vector<std::vector<float>> parameter_values(engine::Trainer& trainer) {
  std::vector<std::vector<float>> values;
  for (const auto& parameter : trainer.model().parameters().all()) {
    values.push_back(parameter->value.to_vector<float>());
  }
  return values;
}

RunResult train(const ParityData& data, const engine::ModelSpec& spec, bool drgrad, Device device) {
  engine::OptimizerSpec optimizer;  // Adam, learning rate 1e-3
  engine::TrainingOptions training;
  training.batch_size = kBatch;
  training.seed = 11;
  training.device = device;
  training.show_progress = false;
  training.save_checkpoints = false;
  auto stream =
      std::make_unique<engine::InMemoryBatchStream>(data.schema, data.all, kBatch, false, 1);
  engine::Trainer trainer(spec, optimizer, training, std::move(stream), nullptr);
  if (drgrad) {
    engine::DrgradSettings settings;  // paper form, all tower parameters, gamma 1, rho 1
    settings.telemetry_every = 0;
    trainer.set_strategy(std::make_unique<engine::DrgradStrategy>(settings, trainer.model()));
  }
  RunResult result;
  for (const auto& parameter : trainer.model().parameters().all()) {
    result.names.push_back(parameter->name);
  }
  result.initial = parameter_values(trainer);
  for (std::int64_t step = 0; step < kSteps; ++step) {
    const auto losses = trainer.train_step(data.batches[step % kDistinctBatches]);
    double total = 0;
    for (const double loss : losses) total += loss;
    result.losses.push_back(total);
  }
  result.final = parameter_values(trainer);
  return result;
}

void check_parity(bool drgrad) {
  const ParityData data = make_data();
  const engine::ModelSpec spec = small_mmoe(data.schema, drgrad);
  const RunResult cpu = train(data, spec, drgrad, Device::cpu());
  const RunResult gpu = train(data, spec, drgrad, Device::cuda(0));
  REQUIRE(cpu.names == gpu.names);

  // Same seed, same initial values: initialisation draws on the host on both devices.
  for (std::size_t p = 0; p < cpu.names.size(); ++p) {
    INFO("parameter " << cpu.names[p]);
    CHECK(cpu.initial[p] == gpu.initial[p]);
  }

  // Training worked on both (the loss fell), and the two loss curves agree at the end.
  const auto tail_mean = [](const std::vector<double>& losses, bool last) {
    const std::size_t window = losses.size() / 10;
    double sum = 0;
    for (std::size_t i = 0; i < window; ++i) sum += losses[last ? losses.size() - 1 - i : i];
    return sum / static_cast<double>(window);
  };
  CHECK(tail_mean(cpu.losses, true) < tail_mean(cpu.losses, false));
  CHECK(tail_mean(gpu.losses, true) < tail_mean(gpu.losses, false));
  CHECK(tail_mean(gpu.losses, true) ==
        Approx(tail_mean(cpu.losses, true)).epsilon(kLossRelativeTolerance));

  // Worst share of its bound over all tensors and over all elements (1: at the bound).
  double worst_tensor = 0, worst_element = 0;
  std::string worst_tensor_name, worst_element_name;
  for (std::size_t p = 0; p < cpu.names.size(); ++p) {
    const auto& expected = cpu.final[p];
    const auto& got = gpu.final[p];
    REQUIRE(expected.size() == got.size());
    double difference2 = 0, value2 = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const double d = double(got[i]) - double(expected[i]);
      difference2 += d * d;
      value2 += double(expected[i]) * double(expected[i]);
      const double share = std::abs(d) / (kElementAbsoluteTolerance +
                                          kElementRelativeTolerance * std::abs(expected[i]));
      if (!(share <= worst_element)) {
        worst_element = std::isnan(share) ? INFINITY : share;
        worst_element_name = cpu.names[p] + "[" + std::to_string(i) + "]";
      }
    }
    const auto n = static_cast<double>(expected.size());
    const double rms_difference = std::sqrt(difference2 / n);
    const double share = rms_difference / (kTensorAbsoluteTolerance +
                                           kTensorRelativeTolerance * std::sqrt(value2 / n));
    INFO("parameter " << cpu.names[p] << ": rms(gpu - cpu) " << rms_difference << ", rms(cpu) "
                      << std::sqrt(value2 / n));
    CHECK(share <= 1.0);
    if (!(share <= worst_tensor)) {
      worst_tensor = std::isnan(share) ? INFINITY : share;
      worst_tensor_name = cpu.names[p];
    }
  }
  INFO("worst element " << worst_element_name);
  CHECK(worst_element <= 1.0);
  // The margins, for tightening the tolerances after the first GPU runs.
  std::cout << (drgrad ? "drgrad" : "mmoe") << " parity after " << kSteps
            << " steps: worst tensor at " << worst_tensor << " of its bound (" << worst_tensor_name
            << "), worst element at " << worst_element << " of its bound (" << worst_element_name
            << "); final loss cpu " << tail_mean(cpu.losses, true) << " gpu "
            << tail_mean(gpu.losses, true) << std::endl;
}

}  // namespace

TEST_CASE("MMoE trained on the GPU ends where the CPU run ends", "[gpu][parity]") {
  DRGRAD_REQUIRE_GPU();
  check_parity(false);
}

TEST_CASE("DRGrad trained on the GPU ends where the CPU run ends", "[gpu][parity]") {
  DRGRAD_REQUIRE_GPU();
  check_parity(true);
}
