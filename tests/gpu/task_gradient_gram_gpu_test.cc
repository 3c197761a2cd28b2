// GPU tests of kernels/multitask/task_gradient_gram.h: the per-task weight and bias gradients
// and their Gram matrix on CUDA (the fused kernel and the cuBLAS batched path) against the CPU
// twin, on fresh random inputs of awkward shapes and one large one; the device-side Gram
// accumulation; and repeatability bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/multitask/gradient_surgery.h"
#include "kernels/multitask/task_gradient_gram.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::GramUpdate;
using kernels::TaskGradientShape;
using kernels::TaskGramPath;

// Restores the process-wide path setting when a test case ends, pass or fail.
class PathSetting {
 public:
  explicit PathSetting(TaskGramPath path) : before_(kernels::task_gram_path()) {
    kernels::set_task_gram_path(path);
  }
  ~PathSetting() { kernels::set_task_gram_path(before_); }

 private:
  TaskGramPath before_;
};

std::vector<float> absolute(std::vector<float> values) {
  for (float& v : values) v = std::abs(v);
  return values;
}

// Every element within tolerance * magnitude + 1e-6, where magnitude[e] = sum_b |x| |dy| (plus
// the |beta dW| term) bounds what fp32 summation in any order can get wrong.
void check_within_magnitude(const std::vector<float>& cuda_result,
                            const std::vector<float>& cpu_result,
                            const std::vector<float>& magnitude, double tolerance,
                            const std::string& what) {
  REQUIRE(cuda_result.size() == cpu_result.size());
  std::size_t mismatches = 0, worst = 0;
  double worst_ratio = 0;
  for (std::size_t e = 0; e < cuda_result.size(); ++e) {
    const double bound = tolerance * double(magnitude[e]) + 1e-6;
    const double difference = std::abs(double(cuda_result[e]) - double(cpu_result[e]));
    if (!(difference <= bound)) ++mismatches;  // NaN counts as a mismatch
    if (difference / bound > worst_ratio || std::isnan(difference)) {
      worst_ratio = difference / bound;
      worst = e;
    }
  }
  INFO(what << ": " << mismatches << " of " << cuda_result.size() << " elements off; worst at "
            << worst << ": cuda " << cuda_result[worst] << ", cpu " << cpu_result[worst]
            << ", bound " << tolerance * double(magnitude[worst]) + 1e-6);
  CHECK(mismatches == 0);
}

// |a_ij - b_ij| <= tolerance * (sqrt(b_ii b_jj) + floor): the Cauchy-Schwarz scale of entry ij.
void check_gram(const std::vector<double>& actual, const std::vector<double>& expected,
                std::int64_t tasks, double tolerance, const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t j = 0; j < tasks; ++j) {
      const double scale = std::sqrt(std::abs(expected[i * tasks + i] * expected[j * tasks + j]));
      INFO(what << " Gram (" << i << ", " << j << "): cuda " << actual[i * tasks + j]
                << ", reference " << expected[i * tasks + j]);
      CHECK(std::abs(actual[i * tasks + j] - expected[i * tasks + j]) <=
            tolerance * (scale + 1e-30));
    }
  }
}

void compare_with_cpu(std::mt19937& random, const TaskGradientShape& shape, float beta,
                      TaskGramPath path) {
  const PathSetting setting(path);
  const std::int64_t K = shape.tasks, in = shape.in_features, out = shape.out_features;
  const std::string where = std::string(path == TaskGramPath::kFusedKernel ? "fused" : "batched") +
                            " K=" + std::to_string(K) + " batch=" + std::to_string(shape.batch) +
                            " in=" + std::to_string(in) + " out=" + std::to_string(out) +
                            " beta=" + std::to_string(beta);
  INFO(where);
  const auto x = random_floats(random, shape.batch * in, -1.f, 1.f);
  const auto dy = random_floats(random, K * shape.batch * out, -1.f, 1.f);
  auto weight_start = random_floats(random, K * in * out, -1.f, 1.f);
  auto bias_start = random_floats(random, K * out, -1.f, 1.f);
  if (beta == 0.f) {  // beta = 0 must ignore the old contents, NaN included
    for (float& v : weight_start) v = std::numeric_limits<float>::quiet_NaN();
    for (float& v : bias_start) v = std::numeric_limits<float>::quiet_NaN();
  }

  // CPU twin, and the magnitude of every sum (the same op on absolute values).
  auto weight_cpu = weight_start, bias_cpu = bias_start;
  std::vector<double> weight_gram_cpu(K * K, 0.0), bias_gram_cpu(K * K, 0.0);
  kernels::cpu::task_gradients_with_gram<float>(
      shape, x.data(), dy.data(), beta,
      {weight_cpu.data(), bias_cpu.data(), weight_gram_cpu.data(), bias_gram_cpu.data()},
      GramUpdate::kOverwrite);
  auto weight_magnitude =
      beta == 0.f ? std::vector<float>(weight_start.size(), 0.f) : absolute(weight_start);
  auto bias_magnitude =
      beta == 0.f ? std::vector<float>(bias_start.size(), 0.f) : absolute(bias_start);
  kernels::cpu::task_gradients_with_gram<float>(
      shape, absolute(x).data(), absolute(dy).data(), std::abs(beta),
      {weight_magnitude.data(), bias_magnitude.data(), nullptr, nullptr}, GramUpdate::kOverwrite);

  // CUDA: separate Gram targets, overwritten over a poisoned start.
  DeviceBuffer<float> x_device(x), dy_device(dy);
  DeviceBuffer<float> weight_device(weight_start), bias_device(bias_start);
  DeviceBuffer<double> weight_gram_device(std::vector<double>(K * K, std::nan("")));
  DeviceBuffer<double> bias_gram_device(std::vector<double>(K * K, std::nan("")));
  kernels::task_gradients_with_gram<float>(cuda_context(), shape, x_device.data(), dy_device.data(),
                                           beta,
                                           {weight_device.data(), bias_device.data(),
                                            weight_gram_device.data(), bias_gram_device.data()},
                                           GramUpdate::kOverwrite);
  const auto weight_cuda = weight_device.download();
  const auto bias_cuda = bias_device.download();
  const auto weight_gram_cuda = weight_gram_device.download();
  const auto bias_gram_cuda = bias_gram_device.download();

  // fp32 sums in another order: within 1e-4 of the sum of absolute terms (the GEMM tolerance of
  // these tests; an indexing mistake is off by the order of the magnitude itself).
  check_within_magnitude(weight_cuda, weight_cpu, weight_magnitude, kGemmTolerance, "weight");
  check_within_magnitude(bias_cuda, bias_cpu, bias_magnitude, kGemmTolerance, "bias");
  // The Gram is that of the gradients the kernel wrote: the host pass over the downloaded
  // values differs only in the order of double additions (products of floats are exact in
  // double). Worst case n eps_double relative to sum |g_i| |g_j| <= sqrt(G_ii G_jj), 1.5e-11 for
  // the 131072 positions of the large case; a missing or misplaced term is ~1/n, above 1e-6.
  std::vector<double> weight_gram_of_written(K * K, 0.0), bias_gram_of_written(K * K, 0.0);
  kernels::cpu::accumulate_task_gram(weight_cuda.data(), K, in * out,
                                     weight_gram_of_written.data());
  kernels::cpu::accumulate_task_gram(bias_cuda.data(), K, out, bias_gram_of_written.data());
  check_gram(weight_gram_cuda, weight_gram_of_written, K, 1e-10, "weight (written values)");
  check_gram(bias_gram_cuda, bias_gram_of_written, K, 1e-10, "bias (written values)");
  // And close to the CPU twin's Gram: each G_ij moves by about the gradients' relative error.
  check_gram(weight_gram_cuda, weight_gram_cpu, K, 1e-3, "weight (CPU twin)");
  check_gram(bias_gram_cuda, bias_gram_cpu, K, 1e-3, "bias (CPU twin)");

  // One shared target, added onto a start: the start plus both Grams.
  weight_device.upload(weight_start);
  bias_device.upload(bias_start);
  std::vector<double> start(K * K);
  for (std::int64_t e = 0; e < K * K; ++e) start[e] = 0.5 * double(e / K + e % K);
  DeviceBuffer<double> shared_gram(start);
  kernels::task_gradients_with_gram<float>(
      cuda_context(), shape, x_device.data(), dy_device.data(), beta,
      {weight_device.data(), bias_device.data(), shared_gram.data(), shared_gram.data()},
      GramUpdate::kAdd);
  CHECK(weight_device.download() == weight_cuda);  // same inputs, same bits
  CHECK(bias_device.download() == bias_cuda);
  const auto shared = shared_gram.download();
  for (std::int64_t e = 0; e < K * K; ++e) {
    INFO("shared Gram entry " << e);
    const double expected = start[e] + weight_gram_cuda[e] + bias_gram_cuda[e];
    CHECK(std::abs(shared[e] - expected) <= 1e-12 * (std::abs(expected) + 1.0));
  }
}

}  // namespace

TEST_CASE("per-task gradients with their Gram on CUDA match the CPU twin (awkward shapes)",
          "[gpu][task_gram]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (const TaskGramPath path : {TaskGramPath::kFusedKernel, TaskGramPath::kBatchedGemmThenGram}) {
    for (const std::int64_t tasks : {1, 2, 4, 8, 9}) {  // 9: above the fused kernel's limit
      for (const TaskGradientShape& size :
           {TaskGradientShape{0, 1, 37, 45}, TaskGradientShape{0, 7, 5, 3},
            TaskGradientShape{0, 33, 64, 31}, TaskGradientShape{0, 100, 1, 70},
            TaskGradientShape{0, 0, 3, 4}}) {
        for (const float beta : {0.f, 1.f}) {
          TaskGradientShape shape = size;
          shape.tasks = tasks;
          compare_with_cpu(random, shape, beta, path);
        }
      }
    }
  }
}

TEST_CASE("per-task gradients with their Gram on CUDA match the CPU twin (large)",
          "[gpu][task_gram]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (const TaskGramPath path : {TaskGramPath::kFusedKernel, TaskGramPath::kBatchedGemmThenGram}) {
    compare_with_cpu(random, TaskGradientShape{4, 8192, 512, 256}, 1.f, path);
  }
}

TEST_CASE("the fused Gram repeats bit for bit", "[gpu][task_gram]") {
  DRGRAD_REQUIRE_GPU();
  const PathSetting setting(TaskGramPath::kFusedKernel);
  auto random = fresh_generator();
  const TaskGradientShape shape{3, 300, 70, 90};
  DeviceBuffer<float> x(random_floats(random, 300 * 70, -1.f, 1.f));
  DeviceBuffer<float> dy(random_floats(random, 3 * 300 * 90, -1.f, 1.f));
  std::vector<std::vector<double>> grams;
  std::vector<std::vector<float>> weights;
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> weight(std::size_t(3 * 70 * 90)), bias(std::size_t(3 * 90));
    DeviceBuffer<double> gram(std::vector<double>(9, 0.0));
    kernels::task_gradients_with_gram<float>(cuda_context(), shape, x.data(), dy.data(), 0.f,
                                             {weight.data(), bias.data(), gram.data(), gram.data()},
                                             GramUpdate::kOverwrite);
    grams.push_back(gram.download());
    weights.push_back(weight.download());
  }
  CHECK(grams[0] == grams[1]);
  CHECK(weights[0] == weights[1]);
}

TEST_CASE("device-side Gram accumulation matches the host pass", "[gpu][task_gram]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (const std::int64_t tasks : {1, 2, 5, 8, 9}) {
    for (const std::int64_t n : {0, 1, 255, 100003}) {
      INFO("tasks " << tasks << " n " << n);
      const auto gradients = random_floats(random, tasks * n, -1.f, 1.f);
      DeviceBuffer<float> gradients_device(gradients);
      std::vector<double> start(tasks * tasks, 0.5);
      DeviceBuffer<double> gram_device(start);
      kernels::accumulate_task_gram_on_device<float>(cuda_context(), gradients_device.data(), tasks,
                                                     n, gram_device.data());
      // A second parameter's Gram added on the device, then one read.
      DeviceBuffer<double> other(std::vector<double>(tasks * tasks, 0.25));
      kernels::add_task_gram(cuda_context(), other.data(), tasks, gram_device.data());
      std::vector<double> read(tasks * tasks, -1.0);
      kernels::read_task_gram(cuda_context(), gram_device.data(), tasks, read.data());
      std::vector<double> expected = start;
      kernels::cpu::accumulate_task_gram(gradients.data(), tasks, n, expected.data());
      for (double& e : expected) e += 0.25;
      for (std::size_t e = 0; e < expected.size(); ++e) {
        INFO("entry " << e);
        // Exact products of floats summed in double; only the order of additions differs.
        CHECK(std::abs(read[e] - expected[e]) <= 1e-9 * (1.0 + static_cast<double>(n)));
      }
    }
  }
}

}  // namespace drgrad::gpu_test
