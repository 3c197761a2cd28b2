// GPU tests of kernels/dense/gemm.h: cuBLAS products (every transpose, padded leading
// dimensions, batches with a shared A) and the bias helpers, each against the CPU twin on fresh
// random inputs.
#include <cuda_runtime.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/dense/gemm.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::GemmBatch;
using kernels::GemmShape;

// A row-major shape with every leading dimension `padding` wider than needed.
GemmShape make_shape(std::int64_t m, std::int64_t n, std::int64_t k, bool transpose_a,
                     bool transpose_b, std::int64_t padding) {
  GemmShape shape;
  shape.m = m;
  shape.n = n;
  shape.k = k;
  shape.transpose_a = transpose_a;
  shape.transpose_b = transpose_b;
  shape.lda = (transpose_a ? m : k) + padding;
  shape.ldb = (transpose_b ? k : n) + padding;
  shape.ldc = n + padding;
  return shape;
}
std::int64_t a_elements(const GemmShape& s) {
  return (s.transpose_a ? s.k : s.m) * s.lda;
}
std::int64_t b_elements(const GemmShape& s) {
  return (s.transpose_b ? s.n : s.k) * s.ldb;
}
std::int64_t c_elements(const GemmShape& s) {
  return s.m * s.ldc;
}

std::string describe(const GemmShape& s) {
  return "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) +
         (s.transpose_a ? " A^T" : " A") + (s.transpose_b ? " B^T" : " B") +
         " lda=" + std::to_string(s.lda) + " ldb=" + std::to_string(s.ldb) +
         " ldc=" + std::to_string(s.ldc);
}

struct Dimensions {
  std::int64_t m, n, k;
};
// Single rows and columns, sizes that are not multiples of any tile, and one large enough that
// cuBLAS splits it across many blocks.
const std::vector<Dimensions> kDimensions = {{1, 1, 1},    {1, 37, 5},     {33, 1, 17},
                                             {64, 48, 32}, {129, 67, 255}, {300, 257, 131}};

}  // namespace

TEST_CASE("gemm on CUDA matches the CPU twin for every transpose and padded strides",
          "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const kernels::Context ctx = cuda_context();
  for (const Dimensions& d : kDimensions) {
    for (int transposes = 0; transposes < 4; ++transposes) {
      for (std::int64_t padding : {0, 3}) {
        const GemmShape shape =
            make_shape(d.m, d.n, d.k, transposes & 1, (transposes & 2) != 0, padding);
        const auto a = random_floats(random, a_elements(shape), -1.f, 1.f);
        const auto b = random_floats(random, b_elements(shape), -1.f, 1.f);
        auto c_cpu = random_floats(random, c_elements(shape), -1.f, 1.f);
        DeviceBuffer<float> a_device(a), b_device(b), c_device(c_cpu);
        const float alpha = 1.25f, beta = 0.5f;
        kernels::gemm(ctx, shape, alpha, a_device.data(), b_device.data(), beta, c_device.data());
        kernels::cpu::gemm(shape, alpha, a.data(), b.data(), beta, c_cpu.data());
        check_close(c_device.download(), c_cpu, kGemmTolerance, describe(shape));
      }
    }
  }
}

TEST_CASE("gemm on CUDA with beta 0 overwrites C, NaN included", "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const GemmShape shape = make_shape(45, 70, 19, false, true, 1);
  const auto a = random_floats(random, a_elements(shape), -1.f, 1.f);
  const auto b = random_floats(random, b_elements(shape), -1.f, 1.f);
  std::vector<float> c_cpu(c_elements(shape), 0.f);
  DeviceBuffer<float> a_device(a), b_device(b);
  DeviceBuffer<float> c_device(
      std::vector<float>(c_elements(shape), std::numeric_limits<float>::quiet_NaN()));
  kernels::gemm(cuda_context(), shape, 1.f, a_device.data(), b_device.data(), 0.f, c_device.data());
  kernels::cpu::gemm(shape, 1.f, a.data(), b.data(), 0.f, c_cpu.data());
  // The padding column of each row is never written: it stays NaN on the device, 0 on the CPU.
  auto c_cuda = c_device.download();
  for (std::int64_t r = 0; r < shape.m; ++r) {
    CHECK(std::isnan(c_cuda[r * shape.ldc + shape.n]));
    c_cuda[r * shape.ldc + shape.n] = 0.f;
  }
  check_close(c_cuda, c_cpu, kGemmTolerance, describe(shape));
}

TEST_CASE("gemm on CUDA runs on the context's stream", "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  cudaStream_t stream = nullptr;
  DRGRAD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  kernels::Context ctx = cuda_context();
  ctx.stream = stream;
  const GemmShape shape = make_shape(96, 80, 64, true, false, 0);
  const auto a = random_floats(random, a_elements(shape), -1.f, 1.f);
  const auto b = random_floats(random, b_elements(shape), -1.f, 1.f);
  std::vector<float> c_cpu(c_elements(shape), 0.f);
  DeviceBuffer<float> a_device(a), b_device(b), c_device(c_cpu);
  kernels::gemm(ctx, shape, 1.f, a_device.data(), b_device.data(), 0.f, c_device.data());
  kernels::add_bias_rows(ctx, c_device.data(), shape.ldc, b_device.data(), shape.m, shape.n);
  // The copies below use the legacy default stream, which does not wait for a non-blocking one.
  DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
  DRGRAD_CUDA_CHECK(cudaStreamDestroy(stream));
  kernels::cpu::gemm(shape, 1.f, a.data(), b.data(), 0.f, c_cpu.data());
  kernels::cpu::add_bias_rows(c_cpu.data(), shape.ldc, b.data(), shape.m, shape.n);
  check_close(c_device.download(), c_cpu, kGemmTolerance, describe(shape) + " on a stream");
}

TEST_CASE("strided batched gemm on CUDA matches the CPU twin, A shared across the batch",
          "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (const Dimensions& d : {Dimensions{1, 1, 1}, Dimensions{17, 33, 9}, Dimensions{64, 40, 96}}) {
    for (int transposes = 0; transposes < 4; ++transposes) {
      const GemmShape shape = make_shape(d.m, d.n, d.k, transposes & 1, (transposes & 2) != 0, 2);
      GemmBatch batch;
      batch.count = 5;
      batch.stride_a = 0;  // one A for every product, as a layer's weights are
      batch.stride_b = b_elements(shape) + 7;
      batch.stride_c = c_elements(shape) + 3;
      const auto a = random_floats(random, a_elements(shape), -1.f, 1.f);
      const auto b = random_floats(random, batch.stride_b * batch.count, -1.f, 1.f);
      auto c_cpu = random_floats(random, batch.stride_c * batch.count, -1.f, 1.f);
      DeviceBuffer<float> a_device(a), b_device(b), c_device(c_cpu);
      kernels::gemm_strided_batched(cuda_context(), shape, batch, 0.75f, a_device.data(),
                                    b_device.data(), 1.f, c_device.data());
      kernels::cpu::gemm_strided_batched(shape, batch, 0.75f, a.data(), b.data(), 1.f,
                                         c_cpu.data());
      check_close(c_device.download(), c_cpu, kGemmTolerance, describe(shape) + " batch of 5");
    }
  }
}

TEST_CASE("batched gemm on CUDA refuses overlapping outputs", "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  const GemmShape shape = make_shape(4, 4, 4, false, false, 0);
  GemmBatch batch;
  batch.count = 3;
  batch.stride_a = 16;
  batch.stride_b = 16;
  batch.stride_c = 0;  // every product into the same C: a race on the device
  DeviceBuffer<float> a(std::vector<float>(48, 1.f)), b(std::vector<float>(48, 1.f));
  DeviceBuffer<float> c(std::vector<float>(16, 0.f));
  CHECK_THROWS_AS(kernels::gemm_strided_batched(cuda_context(), shape, batch, 1.f, a.data(),
                                                b.data(), 0.f, c.data()),
                  kernels::NotSupportedError);
}

TEST_CASE("add_bias_rows on CUDA matches the CPU twin and leaves the padding alone",
          "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t rows : {1, 3, 257}) {
    for (std::int64_t cols : {1, 31, 300}) {
      const std::int64_t ld = cols + 2;
      auto y_cpu = random_floats(random, rows * ld, -2.f, 2.f);
      const auto bias = random_floats(random, cols, -1.f, 1.f);
      DeviceBuffer<float> y_device(y_cpu), bias_device(bias);
      kernels::add_bias_rows(cuda_context(), y_device.data(), ld, bias_device.data(), rows, cols);
      kernels::cpu::add_bias_rows(y_cpu.data(), ld, bias.data(), rows, cols);
      check_close(y_device.download(), y_cpu, kFloatTolerance,
                  "add_bias_rows " + std::to_string(rows) + "x" + std::to_string(cols));
    }
  }
}

TEST_CASE("column_sums on CUDA matches the CPU twin and repeats bit for bit", "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t rows : {0, 1, 5, 1000}) {
    for (std::int64_t cols : {1, 33, 513}) {
      for (float beta : {0.f, 0.5f}) {
        const std::int64_t ld = cols + 1;
        const auto x = random_floats(random, rows * ld, -1.f, 1.f);
        auto sums_cpu = random_floats(random, cols, -1.f, 1.f);
        const std::vector<float> sums_start = sums_cpu;
        DeviceBuffer<float> x_device(x), sums_device(sums_cpu);
        kernels::column_sums(cuda_context(), x_device.data(), ld, rows, cols, beta,
                             sums_device.data());
        kernels::cpu::column_sums(x.data(), ld, rows, cols, beta, sums_cpu.data());
        const auto first = sums_device.download();
        const std::string what = "column_sums " + std::to_string(rows) + "x" +
                                 std::to_string(cols) + " beta " + std::to_string(beta);
        // A sum of `rows` terms: allow for the rounding of each.
        check_close(first, sums_cpu, kFloatTolerance * (1 + rows / 64), what);
        sums_device.upload(sums_start);
        kernels::column_sums(cuda_context(), x_device.data(), ld, rows, cols, beta,
                             sums_device.data());
        CHECK(sums_device.download() == first);
      }
    }
  }
}

TEST_CASE("column_sums on CUDA is exact where the answer is known", "[gpu][gemm]") {
  DRGRAD_REQUIRE_GPU();
  // Integers below 2^24 add exactly in fp32 in any order.
  const std::int64_t rows = 4099, cols = 70;
  std::vector<float> x(rows * cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) x[r * cols + c] = static_cast<float>((r + c) % 7);
  }
  DeviceBuffer<float> x_device(x), sums_device(std::vector<float>(cols, 100.f));
  kernels::column_sums(cuda_context(), x_device.data(), cols, rows, cols, 2.f, sums_device.data());
  const auto sums = sums_device.download();
  for (std::int64_t c = 0; c < cols; ++c) {
    double expected = 200.0;
    for (std::int64_t r = 0; r < rows; ++r) expected += (r + c) % 7;
    CHECK(sums[c] == static_cast<float>(expected));
  }
}

}  // namespace drgrad::gpu_test
