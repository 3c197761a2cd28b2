// GPU tests of kernels/gate/gate.h: row softmax (wide and narrow rows, large logits, in place),
// the gated combination of experts (subsets, a repeated expert, accumulation into d_experts), and
// the fused gate (gate_combine_*, also stacked over tasks), each against the CPU twin on fresh
// random inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/gate/gate.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::ExpertSelection;

std::string size_text(std::int64_t rows, std::int64_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

ExpertSelection make_selection(std::initializer_list<int> indices) {
  ExpertSelection selection;
  for (int index : indices) selection.index[selection.count++] = index;
  return selection;
}

// `count` experts cycling through `total_experts` (so count > total names experts repeatedly).
ExpertSelection cycling_selection(int count, int total_experts) {
  ExpertSelection selection;
  for (int i = 0; i < count; ++i) selection.index[selection.count++] = (i * 5 + 1) % total_experts;
  return selection;
}

std::string selection_text(const ExpertSelection& selection) {
  std::string text = "experts {";
  for (int i = 0; i < selection.count; ++i) {
    if (i > 0) text += ',';
    text += std::to_string(selection.index[i]);
  }
  return text + "}";
}

}  // namespace

TEST_CASE("softmax_rows_forward on CUDA matches the CPU twin, also in place", "[gpu][gate]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t rows : {1, 5, 300}) {
    for (std::int64_t cols : {1, 2, 31, 33, 100}) {
      for (float spread : {1.f, 80.f}) {  // 80: exp overflows unless the row maximum is removed
        const auto logits = random_floats(random, rows * cols, -spread, spread);
        std::vector<float> probabilities_cpu(logits.size());
        kernels::cpu::softmax_rows_forward(logits.data(), probabilities_cpu.data(), rows, cols);
        const std::string what =
            "softmax " + size_text(rows, cols) + " spread " + std::to_string(spread);

        DeviceBuffer<float> logits_device(logits);
        DeviceBuffer<float> probabilities_device(
            std::vector<float>(logits.size(), std::numeric_limits<float>::quiet_NaN()));
        kernels::softmax_rows_forward(cuda_context(), logits_device.data(),
                                      probabilities_device.data(), rows, cols);
        const auto probabilities = probabilities_device.download();
        check_close(probabilities, probabilities_cpu, kFloatTolerance, what);
        for (std::int64_t r = 0; r < rows; ++r) {
          double total = 0;
          for (std::int64_t c = 0; c < cols; ++c) total += probabilities[r * cols + c];
          CHECK(std::abs(total - 1.0) < 1e-5);
        }

        kernels::softmax_rows_forward(cuda_context(), logits_device.data(), logits_device.data(),
                                      rows, cols);
        check_close(logits_device.download(), probabilities_cpu, kFloatTolerance,
                    what + " in place");
      }
    }
  }
}

TEST_CASE("softmax_rows_backward on CUDA matches the CPU twin, also in place", "[gpu][gate]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t rows : {1, 5, 300}) {
    for (std::int64_t cols : {1, 2, 31, 33, 100}) {
      std::vector<float> probabilities(rows * cols);
      const auto logits = random_floats(random, rows * cols, -3.f, 3.f);
      kernels::cpu::softmax_rows_forward(logits.data(), probabilities.data(), rows, cols);
      const auto d_probabilities = random_floats(random, rows * cols, -1.f, 1.f);
      std::vector<float> d_logits_cpu(rows * cols);
      kernels::cpu::softmax_rows_backward(probabilities.data(), d_probabilities.data(),
                                          d_logits_cpu.data(), rows, cols);
      const std::string what = "softmax backward " + size_text(rows, cols);

      DeviceBuffer<float> p_device(probabilities), dp_device(d_probabilities);
      DeviceBuffer<float> d_logits_device(
          std::vector<float>(rows * cols, std::numeric_limits<float>::quiet_NaN()));
      kernels::softmax_rows_backward(cuda_context(), p_device.data(), dp_device.data(),
                                     d_logits_device.data(), rows, cols);
      check_close(d_logits_device.download(), d_logits_cpu, kFloatTolerance, what);

      kernels::softmax_rows_backward(cuda_context(), p_device.data(), dp_device.data(),
                                     dp_device.data(), rows, cols);
      check_close(dp_device.download(), d_logits_cpu, kFloatTolerance, what + " in place");
    }
  }
}

TEST_CASE("gated_combination forward and backward on CUDA match the CPU twin", "[gpu][gate]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const int total_experts = 6;
  // All experts in order, a PLE-style subset out of order, one expert named twice, and none.
  const std::vector<ExpertSelection> selections = {make_selection({0, 1, 2, 3, 4, 5}),
                                                   make_selection({4, 0, 2}),
                                                   make_selection({1, 3, 1}), make_selection({})};
  for (const ExpertSelection& selection : selections) {
    for (std::int64_t batch : {1, 19, 200}) {
      for (std::int64_t dim : {1, 16, 70}) {
        const std::string what = selection_text(selection) + " batch " + std::to_string(batch) +
                                 " dim " + std::to_string(dim);
        const auto experts = random_floats(random, total_experts * batch * dim, -1.f, 1.f);
        const auto gate = random_floats(random, batch * selection.count, 0.f, 1.f);
        const auto d_out = random_floats(random, batch * dim, -1.f, 1.f);
        // d_experts accumulates (other gates read the same experts): start from random values.
        auto d_experts_cpu = random_floats(random, experts.size(), -1.f, 1.f);
        std::vector<float> out_cpu(batch * dim), d_gate_cpu(gate.size());

        DeviceBuffer<float> experts_device(experts), gate_device(gate), d_out_device(d_out),
            d_experts_device(d_experts_cpu);
        DeviceBuffer<float> out_device(
            std::vector<float>(out_cpu.size(), std::numeric_limits<float>::quiet_NaN()));
        DeviceBuffer<float> d_gate_device(
            std::vector<float>(d_gate_cpu.size(), std::numeric_limits<float>::quiet_NaN()));

        kernels::gated_combination_forward(cuda_context(), experts_device.data(),
                                           gate_device.data(), selection, batch, dim,
                                           out_device.data());
        kernels::cpu::gated_combination_forward(experts.data(), gate.data(), selection, batch, dim,
                                                out_cpu.data());
        check_close(out_device.download(), out_cpu, kFloatTolerance, what + " forward");

        kernels::gated_combination_backward(
            cuda_context(), experts_device.data(), gate_device.data(), d_out_device.data(),
            selection, batch, dim, d_experts_device.data(), d_gate_device.data());
        kernels::cpu::gated_combination_backward(experts.data(), gate.data(), d_out.data(),
                                                 selection, batch, dim, d_experts_cpu.data(),
                                                 d_gate_cpu.data());
        check_close(d_experts_device.download(), d_experts_cpu, kFloatTolerance,
                    what + " d_experts");
        check_close(d_gate_device.download(), d_gate_cpu, kFloatTolerance, what + " d_gate");
      }
    }
  }
}

TEST_CASE("fused gate forward and backward on CUDA match the CPU twin", "[gpu][gate]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const int total_experts = 6;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // One column, a subset out of order, a repeated expert, and 33 and 64 columns (the fused
  // kernels' lanes hold columns lane and lane + 32).
  const std::vector<ExpertSelection> selections = {
      make_selection({2}), make_selection({4, 0, 2}), make_selection({1, 3, 1}),
      cycling_selection(33, total_experts), cycling_selection(64, total_experts)};
  for (const ExpertSelection& selection : selections) {
    for (std::int64_t batch : {1, 19, 300}) {
      for (std::int64_t dim : {1, 16, 70}) {
        for (float spread : {3.f, 80.f}) {  // 80: exp overflows unless the row maximum is removed
          const std::int64_t count = selection.count;
          const std::string what = selection_text(selection) + " batch " + std::to_string(batch) +
                                   " dim " + std::to_string(dim) + " spread " +
                                   std::to_string(spread);
          const auto experts = random_floats(random, total_experts * batch * dim, -1.f, 1.f);
          const auto logits = random_floats(random, batch * count, -spread, spread);
          const auto d_out = random_floats(random, batch * dim, -1.f, 1.f);
          // d_experts accumulates (other gates read the same experts): start from random values.
          const auto d_experts_start = random_floats(random, experts.size(), -1.f, 1.f);

          std::vector<float> p_cpu(logits.size()), out_cpu(batch * dim);
          kernels::cpu::gate_combine_forward(logits.data(), experts.data(), selection, batch, dim,
                                             p_cpu.data(), out_cpu.data());
          auto d_experts_cpu = d_experts_start;
          std::vector<float> d_logits_cpu(logits.size());
          kernels::cpu::gate_combine_backward(experts.data(), p_cpu.data(), d_out.data(), selection,
                                              batch, dim, d_experts_cpu.data(),
                                              d_logits_cpu.data());

          DeviceBuffer<float> logits_device(logits), experts_device(experts), d_out_device(d_out),
              d_experts_device(d_experts_start);
          DeviceBuffer<float> p_device(std::vector<float>(logits.size(), nan));
          DeviceBuffer<float> out_device(std::vector<float>(out_cpu.size(), nan));
          kernels::gate_combine_forward(cuda_context(), logits_device.data(), experts_device.data(),
                                        selection, batch, dim, p_device.data(), out_device.data());
          check_close(p_device.download(), p_cpu, kFloatTolerance, what + " probabilities");
          check_close(out_device.download(), out_cpu, kFloatTolerance, what + " out");

          // The backward reads the CPU's probabilities, so only its own rounding is compared.
          DeviceBuffer<float> p_cpu_device(p_cpu);
          DeviceBuffer<float> d_logits_device(std::vector<float>(logits.size(), nan));
          kernels::gate_combine_backward(cuda_context(), experts_device.data(), p_cpu_device.data(),
                                         d_out_device.data(), selection, batch, dim,
                                         d_experts_device.data(), d_logits_device.data());
          check_close(d_experts_device.download(), d_experts_cpu, kFloatTolerance,
                      what + " d_experts");
          check_close(d_logits_device.download(), d_logits_cpu, kFloatTolerance,
                      what + " d_logits");

          // In place: the probabilities overwrite the logits.
          kernels::gate_combine_forward(cuda_context(), logits_device.data(), experts_device.data(),
                                        selection, batch, dim, logits_device.data(),
                                        out_device.data());
          check_close(logits_device.download(), p_cpu, kFloatTolerance,
                      what + " probabilities in place");
          check_close(out_device.download(), out_cpu, kFloatTolerance, what + " out in place");
        }
      }
    }
  }
}

TEST_CASE("fused gate stacked backward on CUDA matches the CPU twin", "[gpu][gate]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const int total_experts = 5;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<ExpertSelection> selections = {make_selection({3, 0, 3}),
                                                   cycling_selection(40, total_experts)};
  for (const ExpertSelection& selection : selections) {
    for (std::int64_t tasks : {1, 2, 4}) {
      for (std::int64_t batch : {1, 37}) {
        for (std::int64_t dim : {3, 65}) {
          const std::int64_t count = selection.count;
          const std::string what = selection_text(selection) + " tasks " + std::to_string(tasks) +
                                   " batch " + std::to_string(batch) + " dim " +
                                   std::to_string(dim);
          const auto experts = random_floats(random, total_experts * batch * dim, -1.f, 1.f);
          const auto logits = random_floats(random, batch * count, -3.f, 3.f);
          std::vector<float> p(logits.size()), out(batch * dim);
          kernels::cpu::gate_combine_forward(logits.data(), experts.data(), selection, batch, dim,
                                             p.data(), out.data());
          const auto d_out = random_floats(random, tasks * batch * dim, -1.f, 1.f);
          const auto d_experts_start = random_floats(random, tasks * experts.size(), -1.f, 1.f);
          auto d_experts_cpu = d_experts_start;
          std::vector<float> d_logits_cpu(tasks * batch * count);
          kernels::cpu::gate_combine_backward_stacked(experts.data(), p.data(), d_out.data(),
                                                      selection, tasks, total_experts, batch, dim,
                                                      d_experts_cpu.data(), d_logits_cpu.data());

          DeviceBuffer<float> experts_device(experts), p_device(p), d_out_device(d_out),
              d_experts_device(d_experts_start);
          DeviceBuffer<float> d_logits_device(std::vector<float>(d_logits_cpu.size(), nan));
          kernels::gate_combine_backward_stacked(cuda_context(), experts_device.data(),
                                                 p_device.data(), d_out_device.data(), selection,
                                                 tasks, total_experts, batch, dim,
                                                 d_experts_device.data(), d_logits_device.data());
          check_close(d_experts_device.download(), d_experts_cpu, kFloatTolerance,
                      what + " d_experts");
          check_close(d_logits_device.download(), d_logits_cpu, kFloatTolerance,
                      what + " d_logits");
        }
      }
    }
  }
}

}  // namespace drgrad::gpu_test
