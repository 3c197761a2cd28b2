// GPU tests of kernels/dense/dense_layer.h: every epilogue's forward and backward on CUDA (both
// implementations: cuBLASLt epilogues and cuBLAS + fused kernels) against the CPU twin on fresh
// random inputs, for awkward and large shapes, in fp32, tf32 and bf16.
#include <cuda_runtime.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/dense/dense_layer.h"
#include "kernels/dense/gemm.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::DenseEpilogue;
using kernels::DenseShape;
using kernels::MatmulPrecision;
using kernels::cuda::DenseImplementation;

constexpr DenseEpilogue kEpilogues[] = {DenseEpilogue::kNone, DenseEpilogue::kBias,
                                        DenseEpilogue::kBiasRelu, DenseEpilogue::kBiasMish,
                                        DenseEpilogue::kBiasSigmoid};
constexpr DenseImplementation kImplementations[] = {DenseImplementation::kLtEpilogue,
                                                    DenseImplementation::kGemmThenKernel};

// Tolerances as a multiple of the sum of absolute products behind each output (sum_i |x_i w_i|,
// plus |b|): rounding each input of a product to p mantissa bits moves the product by at most
// 2^(1-p) relatively (truncation; half that when rounding to nearest) per input, so a sum of such
// products moves by at most 2 * 2^(1-p) times the sum of absolute products. tf32 keeps 10 bits
// (2 * 2^-10 ~ 2.0e-3, taken as 2.5e-3); bf16 keeps 7 (2 * 2^-7 ~ 1.6e-2, taken as 2e-2). fp32
// products differ from OpenBLAS's only in summation order: 2e-5 of the absolute sum covers
// sums of a few thousand terms. Every bound adds 1e-5 (1 + |expected|) for the element-wise
// rounding, and activations multiply it by their steepest slope (mish: 1.1).
double product_tolerance(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::kFp32:
      return 2e-5;
    case MatmulPrecision::kTf32:
      return 2.5e-3;
    case MatmulPrecision::kBf16:
      return 2e-2;
  }
  return 0;
}

// |got - expected| <= slope * factor * absolute_sum + 1e-5 (1 + |expected|) for every element.
void check_within_bound(const std::vector<float>& got, const std::vector<float>& expected,
                        const std::vector<float>& absolute_sum, double factor,
                        const std::string& what) {
  REQUIRE(got.size() == expected.size());
  REQUIRE(absolute_sum.size() == expected.size());
  std::size_t mismatches = 0, worst = 0;
  double worst_excess = -INFINITY;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double bound = 1.1 * factor * absolute_sum[i] + 1e-5 * (1 + std::fabs(expected[i]));
    const double difference = std::fabs(double(got[i]) - double(expected[i]));
    const double excess = std::isnan(difference) ? INFINITY : difference - bound;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
    if (!(difference <= bound)) ++mismatches;
  }
  INFO(what << ": " << mismatches << " of " << got.size() << " outside the bound; worst at "
            << worst << " got " << got[worst] << " expected " << expected[worst]);
  CHECK(mismatches == 0);
}

std::vector<float> absolute(std::vector<float> values) {
  for (float& value : values) value = std::fabs(value);
  return values;
}

std::string describe(const DenseShape& s, DenseEpilogue epilogue, MatmulPrecision precision,
                     DenseImplementation implementation) {
  return std::string(kernels::dense_epilogue_name(epilogue)) + " batch=" + std::to_string(s.batch) +
         " in=" + std::to_string(s.in) + " out=" + std::to_string(s.out) + " " +
         kernels::matmul_precision_name(precision) +
         (implementation == DenseImplementation::kLtEpilogue ? " cuBLASLt" : " gemm+kernel");
}

// Batch 1, sizes that are multiples of nothing, a single output, the industrial layers and a
// large batch.
const std::vector<DenseShape> kShapes = {{1, 1, 1},       {1, 416, 512},  {7, 33, 65},
                                         {130, 17, 1},    {37, 130, 257}, {2048, 416, 512},
                                         {4099, 512, 256}};

kernels::Context context_with(MatmulPrecision precision) {
  kernels::Context ctx = cuda_context();
  ctx.matmul_precision = precision;
  return ctx;
}

}  // namespace

TEST_CASE("dense forward on CUDA matches the CPU twin for every epilogue and precision",
          "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (MatmulPrecision precision :
       {MatmulPrecision::kFp32, MatmulPrecision::kTf32, MatmulPrecision::kBf16}) {
    const kernels::Context ctx = context_with(precision);
    for (const DenseShape& s : kShapes) {
      const auto x = random_floats(random, s.batch * s.in, -1.f, 1.f);
      const auto w = random_floats(random, s.in * s.out, -1.f, 1.f);
      const auto bias = random_floats(random, s.out, -0.5f, 0.5f);
      // sum_i |x_i w_i| + |b|: the scale of each output's rounding.
      std::vector<float> absolute_sum(s.batch * s.out);
      kernels::cpu::dense_forward<float>(s, DenseEpilogue::kBias, absolute(x).data(),
                                         absolute(w).data(), absolute(bias).data(),
                                         absolute_sum.data(), nullptr);
      DeviceBuffer<float> x_device(x), w_device(w), bias_device(bias);
      for (DenseEpilogue epilogue : kEpilogues) {
        std::vector<float> y_cpu(s.batch * s.out), z_cpu(s.batch * s.out);
        kernels::cpu::dense_forward<float>(s, epilogue, x.data(), w.data(), bias.data(),
                                           y_cpu.data(), z_cpu.data());
        for (DenseImplementation implementation : kImplementations) {
          const std::vector<float> poison(s.batch * s.out, std::numeric_limits<float>::quiet_NaN());
          DeviceBuffer<float> y_device(poison), z_device(poison);
          kernels::cuda::dense_forward(ctx, s, epilogue, x_device.data(), w_device.data(),
                                       bias_device.data(), y_device.data(), z_device.data(),
                                       nullptr, implementation);
          const std::string what = describe(s, epilogue, precision, implementation);
          check_within_bound(y_device.download(), y_cpu, absolute_sum, product_tolerance(precision),
                             what + " y");
          if (kernels::needs_pre_activation(epilogue)) {
            check_within_bound(z_device.download(), z_cpu, absolute_sum,
                               product_tolerance(precision), what + " z");
          }
        }
      }
    }
  }
}

TEST_CASE("dense backward on CUDA matches the CPU twin for every epilogue and precision",
          "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (MatmulPrecision precision :
       {MatmulPrecision::kFp32, MatmulPrecision::kTf32, MatmulPrecision::kBf16}) {
    const kernels::Context ctx = context_with(precision);
    for (const DenseShape& s : kShapes) {
      for (std::int64_t tasks : {1, 3}) {
        if (tasks > 1 && s.batch > 1000) continue;  // the large shapes once
        const std::int64_t block = s.batch * s.out;
        const auto x = random_floats(random, s.batch * s.in, -1.f, 1.f);
        const auto w = random_floats(random, s.in * s.out, -1.f, 1.f);
        const auto bias = random_floats(random, s.out, -0.5f, 0.5f);
        const auto dy = random_floats(random, tasks * block, -1.f, 1.f);
        DeviceBuffer<float> x_device(x), w_device(w), dy_device(dy);
        for (DenseEpilogue epilogue : kEpilogues) {
          // The forward's outputs come from the CPU, so both backwards read the same y and z.
          std::vector<float> y(block), z(block);
          kernels::cpu::dense_forward<float>(s, epilogue, x.data(), w.data(), bias.data(), y.data(),
                                             z.data());
          DeviceBuffer<float> y_device(y), z_device(z);
          for (bool accumulate : {false, true}) {
            if (!accumulate && s.batch > 1000) continue;  // the large shapes once
            const auto dw_start = random_floats(random, tasks * s.in * s.out, -1.f, 1.f);
            const auto db_start = random_floats(random, tasks * s.out, -1.f, 1.f);
            std::vector<float> d_pre_cpu(tasks * block), dx_cpu(tasks * s.batch * s.in);
            std::vector<float> dw_cpu = dw_start, db_cpu = db_start;
            kernels::cpu::dense_backward<float>(
                s, epilogue, tasks, x.data(), w.data(), y.data(), z.data(), dy.data(),
                d_pre_cpu.data(), dx_cpu.data(), dw_cpu.data(), db_cpu.data(), accumulate);
            // The rounding scale of each gradient: the same products over absolute values.
            const std::vector<float>& dz_cpu =
                kernels::needs_pre_activation_gradient(epilogue) ? d_pre_cpu : dy;
            std::vector<float> dx_scale(dx_cpu.size()), dw_scale(dw_cpu.size(), 0.f),
                db_scale(db_cpu.size(), 0.f);
            kernels::cpu::dense_backward<float>(s, DenseEpilogue::kBias, tasks, absolute(x).data(),
                                                absolute(w).data(), nullptr, nullptr,
                                                absolute(dz_cpu).data(), nullptr, dx_scale.data(),
                                                dw_scale.data(), db_scale.data(), false);
            for (DenseImplementation implementation : kImplementations) {
              DeviceBuffer<float> d_pre_device(
                  std::vector<float>(tasks * block, std::numeric_limits<float>::quiet_NaN()));
              DeviceBuffer<float> dx_device(std::vector<float>(
                  tasks * s.batch * s.in, std::numeric_limits<float>::quiet_NaN()));
              DeviceBuffer<float> dw_device(dw_start), db_device(db_start);
              kernels::cuda::dense_backward(
                  ctx, s, epilogue, tasks, x_device.data(), w_device.data(), y_device.data(),
                  z_device.data(), dy_device.data(), d_pre_device.data(), dx_device.data(),
                  dw_device.data(), db_device.data(), accumulate, implementation);
              const std::string what = describe(s, epilogue, precision, implementation) +
                                       " tasks=" + std::to_string(tasks) +
                                       (accumulate ? " accumulate" : " overwrite");
              const double factor = product_tolerance(precision);
              check_within_bound(dx_device.download(), dx_cpu, dx_scale, factor, what + " dx");
              check_within_bound(dw_device.download(), dw_cpu, dw_scale, factor, what + " dw");
              if (kernels::has_bias(epilogue)) {
                // cuBLASLt's bias-gradient epilogue may read its operand at the product's
                // precision, so the bias gradient gets the product's bound.
                check_within_bound(db_device.download(), db_cpu, db_scale, factor, what + " db");
              } else {
                CHECK(db_device.download() == db_start);
              }
              if (kernels::needs_pre_activation_gradient(epilogue)) {
                check_close(d_pre_device.download(), d_pre_cpu, kFloatTolerance, what + " d_pre");
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("dense backward into a relu producer on CUDA matches the CPU twin", "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  // A producer P = bias+relu layer [batch, p_in] -> [batch, in], then this layer [in] -> [out].
  // P's forward runs on CUDA with a relu mask (cuBLASLt writes it when it can); this layer's
  // backward then gives P's d_pre and bias gradient, through DRELU_BGRAD when the mask exists.
  for (MatmulPrecision precision :
       {MatmulPrecision::kFp32, MatmulPrecision::kTf32, MatmulPrecision::kBf16}) {
    const kernels::Context ctx = context_with(precision);
    for (const DenseShape& s : {DenseShape{1, 5, 3}, DenseShape{37, 130, 33},
                                DenseShape{1000, 512, 256}, DenseShape{64, 129, 1}}) {
      const DenseShape producer{s.batch, 17, s.in};
      const auto producer_x = random_floats(random, producer.batch * producer.in, -1.f, 1.f);
      const auto producer_w = random_floats(random, producer.in * producer.out, -1.f, 1.f);
      const auto producer_b = random_floats(random, producer.out, -0.5f, 0.5f);
      DeviceBuffer<float> producer_x_device(producer_x), producer_w_device(producer_w),
          producer_b_device(producer_b), x_device(s.batch * s.in);
      DeviceBuffer<char> mask_device(kernels::dense_relu_mask_bytes(producer));
      kernels::ReluMask mask{mask_device.data(), false};
      kernels::cuda::dense_forward(ctx, producer, DenseEpilogue::kBiasRelu,
                                   producer_x_device.data(), producer_w_device.data(),
                                   producer_b_device.data(), x_device.data(), nullptr, &mask);
      // Both twins continue from the device's x, so the relu pattern is the same for both.
      const auto x = x_device.download();
      const auto w = random_floats(random, s.in * s.out, -1.f, 1.f);
      const auto bias = random_floats(random, s.out, -0.5f, 0.5f);
      const auto dy = random_floats(random, s.batch * s.out, -1.f, 1.f);
      DeviceBuffer<float> w_device(w), dy_device(dy);
      for (DenseEpilogue epilogue : {DenseEpilogue::kBias, DenseEpilogue::kBiasRelu}) {
        std::vector<float> y(s.batch * s.out);
        kernels::cpu::dense_forward<float>(s, epilogue, x.data(), w.data(), bias.data(), y.data(),
                                           nullptr);
        DeviceBuffer<float> y_device(y);
        const auto dw_start = random_floats(random, s.in * s.out, -1.f, 1.f);
        const auto db_start = random_floats(random, s.out, -1.f, 1.f);
        const auto producer_db_start = random_floats(random, s.in, -1.f, 1.f);
        std::vector<float> d_pre(s.batch * s.out), dw = dw_start, db = db_start,
                                                   producer_d_pre(s.batch * s.in),
                                                   producer_db = producer_db_start;
        kernels::cpu::dense_backward_into_relu_producer<float>(
            s, epilogue, x.data(), w.data(), y.data(), nullptr, dy.data(), d_pre.data(), dw.data(),
            db.data(), true, nullptr, producer_d_pre.data(), producer_db.data());
        // Rounding scales: dx = dz W^T over absolute values (the producer's gradients are a
        // masked copy and a column sum of it).
        const std::vector<float>& dz =
            kernels::needs_pre_activation_gradient(epilogue) ? d_pre : dy;
        std::vector<float> dx_scale(s.batch * s.in), dw_scale(dw.size()), db_scale(db.size());
        kernels::cpu::dense_backward<float>(
            s, DenseEpilogue::kBias, 1, absolute(x).data(), absolute(w).data(), nullptr, nullptr,
            absolute(dz).data(), nullptr, dx_scale.data(), dw_scale.data(), db_scale.data(), false);
        std::vector<float> producer_db_scale(s.in, 0.f);
        kernels::cpu::column_sums<float>(dx_scale.data(), s.in, s.batch, s.in, 0.f,
                                         producer_db_scale.data());
        for (DenseImplementation implementation : kImplementations) {
          DeviceBuffer<float> d_pre_device(d_pre.size()), dw_device(dw_start), db_device(db_start),
              producer_d_pre_device(producer_d_pre.size()), producer_db_device(producer_db_start);
          kernels::cuda::dense_backward_into_relu_producer(
              ctx, s, epilogue, x_device.data(), w_device.data(), y_device.data(), nullptr,
              dy_device.data(), d_pre_device.data(), dw_device.data(), db_device.data(), true,
              mask.written ? mask_device.data() : nullptr, producer_d_pre_device.data(),
              producer_db_device.data(), implementation);
          const std::string what = describe(s, epilogue, precision, implementation) +
                                   (mask.written ? " with the relu mask" : " without a mask");
          const double factor = product_tolerance(precision);
          check_within_bound(producer_d_pre_device.download(), producer_d_pre, dx_scale, factor,
                             what + " producer d_pre");
          check_within_bound(producer_db_device.download(), producer_db, producer_db_scale, factor,
                             what + " producer d_bias");
          check_within_bound(dw_device.download(), dw, dw_scale, factor, what + " dw");
          check_within_bound(db_device.download(), db, db_scale, factor, what + " db");
        }
      }
    }
  }
}

TEST_CASE("dense op on CUDA handles operands that are not 16-byte aligned", "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  // Offsetting every operand by one float leaves them 4-byte aligned: the cached cuBLASLt plans
  // are per alignment, so this must pick (or fall back from) a plan that accepts it.
  const DenseShape s{19, 24, 40};
  const auto x = random_floats(random, s.batch * s.in + 1, -1.f, 1.f);
  const auto w = random_floats(random, s.in * s.out + 1, -1.f, 1.f);
  const auto bias = random_floats(random, s.out + 1, -1.f, 1.f);
  DeviceBuffer<float> x_device(x), w_device(w), bias_device(bias);
  for (DenseEpilogue epilogue : {DenseEpilogue::kBias, DenseEpilogue::kBiasRelu}) {
    std::vector<float> y_cpu(s.batch * s.out + 1, 0.f);
    kernels::cpu::dense_forward<float>(s, epilogue, x.data() + 1, w.data() + 1, bias.data() + 1,
                                       y_cpu.data() + 1, nullptr);
    std::vector<float> absolute_sum(y_cpu.size(), 0.f);
    kernels::cpu::dense_forward<float>(s, DenseEpilogue::kBias, absolute(x).data() + 1,
                                       absolute(w).data() + 1, absolute(bias).data() + 1,
                                       absolute_sum.data() + 1, nullptr);
    DeviceBuffer<float> y_device(std::vector<float>(y_cpu.size(), 0.f));
    kernels::dense_forward<float>(cuda_context(), s, epilogue, x_device.data() + 1,
                                  w_device.data() + 1, bias_device.data() + 1, y_device.data() + 1,
                                  nullptr);
    check_within_bound(y_device.download(), y_cpu, absolute_sum,
                       product_tolerance(MatmulPrecision::kFp32),
                       std::string(kernels::dense_epilogue_name(epilogue)) + " offset by 4 bytes");
  }
}

TEST_CASE("dense backward on CUDA repeats bit for bit through gemm+kernel", "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const DenseShape s{1000, 64, 96};
  const auto x = random_floats(random, s.batch * s.in, -1.f, 1.f);
  const auto w = random_floats(random, s.in * s.out, -1.f, 1.f);
  const auto bias = random_floats(random, s.out, -1.f, 1.f);
  const auto dy = random_floats(random, s.batch * s.out, -1.f, 1.f);
  DeviceBuffer<float> x_device(x), w_device(w), bias_device(bias), dy_device(dy);
  DeviceBuffer<float> y_device(s.batch * s.out), z_device(s.batch * s.out),
      d_pre_device(s.batch * s.out), dx_device(s.batch * s.in), dw_device(s.in * s.out),
      db_device(s.out);
  kernels::dense_forward<float>(cuda_context(), s, DenseEpilogue::kBiasMish, x_device.data(),
                                w_device.data(), bias_device.data(), y_device.data(),
                                z_device.data());
  std::vector<float> first_dw, first_db;
  for (int run = 0; run < 2; ++run) {
    kernels::cuda::dense_backward(
        cuda_context(), s, DenseEpilogue::kBiasMish, 1, x_device.data(), w_device.data(),
        y_device.data(), z_device.data(), dy_device.data(), d_pre_device.data(), dx_device.data(),
        dw_device.data(), db_device.data(), false, DenseImplementation::kGemmThenKernel);
    if (run == 0) {
      first_dw = dw_device.download();
      first_db = db_device.download();
    } else {
      CHECK(dw_device.download() == first_dw);
      CHECK(db_device.download() == first_db);
    }
  }
}

TEST_CASE("dense op on CUDA runs on the context's stream", "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  cudaStream_t stream = nullptr;
  DRGRAD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  kernels::Context ctx = cuda_context();
  ctx.stream = stream;
  const DenseShape s{300, 48, 80};
  const auto x = random_floats(random, s.batch * s.in, -1.f, 1.f);
  const auto w = random_floats(random, s.in * s.out, -1.f, 1.f);
  const auto bias = random_floats(random, s.out, -1.f, 1.f);
  const auto dy = random_floats(random, s.batch * s.out, -1.f, 1.f);
  DeviceBuffer<float> x_device(x), w_device(w), bias_device(bias), dy_device(dy);
  DeviceBuffer<float> y_device(s.batch * s.out), d_pre_device(s.batch * s.out),
      dx_device(s.batch * s.in), dw_device(s.in * s.out), db_device(s.out);
  kernels::dense_forward<float>(ctx, s, DenseEpilogue::kBiasRelu, x_device.data(), w_device.data(),
                                bias_device.data(), y_device.data(), nullptr);
  kernels::dense_backward<float>(ctx, s, DenseEpilogue::kBiasRelu, 1, x_device.data(),
                                 w_device.data(), y_device.data(), nullptr, dy_device.data(),
                                 d_pre_device.data(), dx_device.data(), dw_device.data(),
                                 db_device.data(), false);
  // The copies below use the legacy default stream, which does not wait for a non-blocking one.
  DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
  DRGRAD_CUDA_CHECK(cudaStreamDestroy(stream));
  std::vector<float> y(s.batch * s.out), d_pre(y.size()), dx(s.batch * s.in), dw(s.in * s.out),
      db(s.out);
  kernels::cpu::dense_forward<float>(s, DenseEpilogue::kBiasRelu, x.data(), w.data(), bias.data(),
                                     y.data(), nullptr);
  kernels::cpu::dense_backward<float>(s, DenseEpilogue::kBiasRelu, 1, x.data(), w.data(), y.data(),
                                      nullptr, dy.data(), d_pre.data(), dx.data(), dw.data(),
                                      db.data(), false);
  check_close(y_device.download(), y, kGemmTolerance, "y on a stream");
  check_close(dx_device.download(), dx, kGemmTolerance, "dx on a stream");
  check_close(dw_device.download(), dw, kGemmTolerance * 4, "dw on a stream");
  check_close(db_device.download(), db, kGemmTolerance * 4, "db on a stream");
}

TEST_CASE("dense forward on CUDA lets a NaN input reach y, as the CPU twin does", "[gpu][dense]") {
  DRGRAD_REQUIRE_GPU();
  // A NaN feature in sample 0 makes every z of that sample NaN. The CPU twin (and drgrad's
  // kernels, dense_math.h) pass NaN through every activation, relu included, so that the loss
  // turns NaN and the trainer refuses the step. A fused epilogue that clips NaN to 0 (relu as
  // max(z, 0)) would hide the NaN from the loss while the weight gradient x^T dz still turns NaN:
  // this checks that no implementation, mask or not, differs from the CPU there.
  auto random = fresh_generator();
  const DenseShape s{9, 40, 72};
  auto x = random_floats(random, s.batch * s.in, -1.f, 1.f);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  const auto w = random_floats(random, s.in * s.out, -1.f, 1.f);
  const auto bias = random_floats(random, s.out, -0.5f, 0.5f);
  DeviceBuffer<float> x_device(x), w_device(w), bias_device(bias);
  DeviceBuffer<char> mask_device(kernels::dense_relu_mask_bytes(s));
  for (DenseEpilogue epilogue : kEpilogues) {
    std::vector<float> y_cpu(s.batch * s.out), z_cpu(s.batch * s.out);
    kernels::cpu::dense_forward<float>(s, epilogue, x.data(), w.data(), bias.data(), y_cpu.data(),
                                       z_cpu.data());
    for (DenseImplementation implementation : kImplementations) {
      for (bool with_mask : {false, true}) {
        if (with_mask && epilogue != DenseEpilogue::kBiasRelu) continue;
        DeviceBuffer<float> y_device(s.batch * s.out), z_device(s.batch * s.out);
        kernels::ReluMask mask{mask_device.data(), false};
        kernels::cuda::dense_forward(cuda_context(), s, epilogue, x_device.data(), w_device.data(),
                                     bias_device.data(), y_device.data(), z_device.data(),
                                     with_mask ? &mask : nullptr, implementation);
        const auto y = y_device.download();
        std::size_t differ = 0;
        for (std::size_t i = 0; i < y.size(); ++i) {
          if (std::isnan(y[i]) != std::isnan(y_cpu[i])) ++differ;
        }
        INFO(describe(s, epilogue, MatmulPrecision::kFp32, implementation)
             << (with_mask ? (mask.written ? " with the relu mask written" : " mask refused") : "")
             << ": " << differ << " outputs NaN on one twin only (sample 0 is NaN on the CPU)");
        CHECK(differ == 0);
      }
    }
  }
}

}  // namespace drgrad::gpu_test
