// GPU test of axpy_scalar_in_memory: the scale read from device memory on CUDA against the CPU
// twin with the same scale in host memory.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "kernels/vector/vector_ops.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {

TEST_CASE("axpy with the scale in device memory matches the CPU twin", "[gpu][vector][mixing]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (const double alpha : {0.5, 1.0 / 3.0, -2.75}) {
    for (const std::int64_t n : {1, 255, 257, 100003}) {
      const auto x = random_floats(random, n, -1.f, 1.f);
      auto y_cpu = random_floats(random, n, -1.f, 1.f);
      DeviceBuffer<float> x_device(x), y_device(y_cpu);
      DeviceBuffer<double> alpha_device(std::vector<double>{alpha});
      kernels::axpy_scalar_in_memory<float>(cuda_context(), n, alpha_device.data(), x_device.data(),
                                            y_device.data());
      kernels::axpy_scalar_in_memory<float>(kernels::Context::cpu(), n, &alpha, x.data(),
                                            y_cpu.data());
      check_close(y_device.download(), y_cpu, kFloatTolerance,
                  "axpy_scalar_in_memory n=" + std::to_string(n));
    }
  }
}

}  // namespace drgrad::gpu_test
