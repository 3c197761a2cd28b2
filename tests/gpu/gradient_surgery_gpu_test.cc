// GPU tests of kernels/multitask/gradient_surgery.h: the Gram matrix and the weighted combination
// of a [tasks, n] matrix against the CPU twin, and the Gram pass repeating bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/multitask/gradient_surgery.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {

TEST_CASE("task Gram matrix and combination on CUDA match the CPU twin", "[gpu][surgery]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t tasks : {1, 2, 5}) {
    for (std::int64_t n : {0, 1, 255, 100003}) {
      const auto gradients = random_floats(random, tasks * n, -1.f, 1.f);
      DeviceBuffer<float> gradients_device(gradients);
      std::vector<double> gram_cuda(static_cast<std::size_t>(tasks * tasks), 0.5);
      std::vector<double> gram_cpu = gram_cuda;  // both accumulate onto the same start
      kernels::accumulate_task_gram(cuda_context(), gradients_device.data(), tasks, n,
                                    gram_cuda.data());
      kernels::cpu::accumulate_task_gram(gradients.data(), tasks, n, gram_cpu.data());
      std::vector<double> gram_again(static_cast<std::size_t>(tasks * tasks), 0.5);
      kernels::accumulate_task_gram(cuda_context(), gradients_device.data(), tasks, n,
                                    gram_again.data());
      CHECK(gram_again == gram_cuda);
      for (std::size_t i = 0; i < gram_cpu.size(); ++i) {
        INFO("tasks " << tasks << " n " << n << " entry " << i);
        // Exact products summed in double; only the order of additions differs.
        CHECK(std::abs(gram_cuda[i] - gram_cpu[i]) <= 1e-9 * (1.0 + static_cast<double>(n)));
      }
      std::vector<double> weights;
      for (std::int64_t i = 0; i < tasks; ++i) weights.push_back(0.75 - 0.5 * double(i));
      DeviceBuffer<float> out_device(std::vector<float>(static_cast<std::size_t>(n), 7.f));
      kernels::combine_task_gradients(cuda_context(), gradients_device.data(), tasks, n,
                                      weights.data(), out_device.data());
      std::vector<float> out_cpu(static_cast<std::size_t>(n));
      kernels::cpu::combine_task_gradients(gradients.data(), tasks, n, weights.data(),
                                           out_cpu.data());
      check_close(out_device.download(), out_cpu, kFloatTolerance,
                  "combine tasks=" + std::to_string(tasks) + " n=" + std::to_string(n));
    }
  }
}

}  // namespace drgrad::gpu_test
