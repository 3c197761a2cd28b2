// GPU tests of kernels/vector/vector_ops.h: strided row copies (overwrite and accumulate), axpy
// and the deterministic dot product, against the CPU twin on fresh random inputs and on inputs
// whose dot product is known exactly.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/vector/vector_ops.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {

TEST_CASE("copy_rows on CUDA matches the CPU twin with strides, copying and accumulating",
          "[gpu][vector]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t rows : {1, 7, 513}) {
    for (std::int64_t cols : {1, 30, 257}) {
      for (bool accumulate : {false, true}) {
        // Source and destination wider than the copied block, as when slots are concatenated.
        const std::int64_t src_stride = cols + 5, dst_stride = 2 * cols + 1;
        const auto src = random_floats(random, rows * src_stride, -1.f, 1.f);
        auto dst_cpu = random_floats(random, rows * dst_stride, -1.f, 1.f);
        DeviceBuffer<float> src_device(src), dst_device(dst_cpu);
        kernels::copy_rows(cuda_context(), src_device.data(), src_stride, dst_device.data() + 1,
                           dst_stride, rows, cols, accumulate);
        kernels::cpu::copy_rows(src.data(), src_stride, dst_cpu.data() + 1, dst_stride, rows, cols,
                                accumulate);
        check_close(dst_device.download(), dst_cpu, kFloatTolerance,
                    "copy_rows " + std::to_string(rows) + "x" + std::to_string(cols) +
                        (accumulate ? " accumulate" : " copy"));
      }
    }
  }
}

TEST_CASE("axpy on CUDA matches the CPU twin", "[gpu][vector]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t n : {0, 1, 255, 1000003}) {
    const auto x = random_floats(random, n, -1.f, 1.f);
    auto y_cpu = random_floats(random, n, -1.f, 1.f);
    DeviceBuffer<float> x_device(x), y_device(y_cpu);
    kernels::axpy(cuda_context(), n, -0.375f, x_device.data(), y_device.data());
    kernels::cpu::axpy(n, -0.375f, x.data(), y_cpu.data());
    check_close(y_device.download(), y_cpu, kFloatTolerance, "axpy n=" + std::to_string(n));
  }
}

TEST_CASE("dot on CUDA matches the CPU twin and repeats bit for bit", "[gpu][vector]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t n : {0, 1, 255, 256, 65537, 1000003}) {
    const auto x = random_floats(random, n, -1.f, 1.f);
    const auto y = random_floats(random, n, -1.f, 1.f);
    DeviceBuffer<float> x_device(x), y_device(y);
    const double cuda_result = kernels::dot(cuda_context(), n, x_device.data(), y_device.data());
    const double cpu_result = kernels::cpu::dot(n, x.data(), y.data());
    // Both sum exact products in double; only the order of the additions differs.
    double magnitude = 0;
    for (std::int64_t i = 0; i < n; ++i) magnitude += std::abs(double(x[i]) * y[i]);
    INFO("dot n=" << n << ": CUDA " << cuda_result << ", CPU " << cpu_result);
    CHECK(std::abs(cuda_result - cpu_result) <= 1e-12 * magnitude);
    CHECK(kernels::dot(cuda_context(), n, x_device.data(), y_device.data()) == cuda_result);
  }
}

TEST_CASE("dot on CUDA is exact where the answer is known", "[gpu][vector]") {
  DRGRAD_REQUIRE_GPU();
  // x[i] = i mod 1000 and y = 1: the sum is an integer far below 2^53, exact in double.
  const std::int64_t n = 3000017;
  std::vector<float> x(n), y(n, 1.f);
  double expected = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i % 1000);
    expected += i % 1000;
  }
  DeviceBuffer<float> x_device(x), y_device(y);
  CHECK(kernels::dot(cuda_context(), n, x_device.data(), y_device.data()) == expected);
  // The squared norm as a dot of a vector with itself.
  CHECK(kernels::dot(cuda_context(), n, y_device.data(), y_device.data()) == double(n));
}

}  // namespace drgrad::gpu_test
