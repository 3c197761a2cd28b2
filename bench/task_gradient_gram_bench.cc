// The per-task gradient pass of gradient surgery on one shared dense layer: the fused kernel
// (products and Gram in one pass) against cuBLAS strided-batched + a separate Gram pass, for the
// industrial-shaped layers. Prints the cost model (flops, bytes), the median time of each path,
// what that achieves, and how far the two paths' results are apart, measured in the same run.
// This is the measurement that decides kernels::TaskGramPath (docs/gpu.md).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/gpu_bench_support.h"
#include "kernels/core/device.h"
#include "kernels/core/memory.h"
#include "kernels/multitask/task_gradient_gram.h"

#if defined(DRGRAD_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#endif

namespace {

namespace kernels = drgrad::kernels;
namespace bench = drgrad::bench;

struct BenchOptions {
  std::string device = "cuda";
  std::int64_t batch = 8192;
  std::vector<std::int64_t> widths{416, 512, 256};  // layers 416->512 and 512->256
  std::vector<std::int64_t> tasks{2, 4, 8};
  int warmup = 5;
  int runs = 7;
  int iterations = 10;
  std::string json_path;
};

const char* kUsage =
    "usage: task_gradient_gram_bench [options]\n"
    "  --device cuda|cuda:N|cpu  where to time (cuda); no such device: SKIPPED, exit 0\n"
    "  --batch N                 rows of the shared input (8192)\n"
    "  --widths A,B,C            layers A->B, B->C, ... (416,512,256)\n"
    "  --tasks K,...             task counts (2,4,8)\n"
    "  --warmup N --runs R --iterations N   untimed calls, timed runs (median), calls per run\n"
    "  --json FILE               also append the rows as JSON lines\n";

BenchOptions parse(int argc, char** argv) {
  BenchOptions options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--device") {
      options.device = value;
    } else if (flag == "--batch") {
      options.batch = std::stoll(value);
    } else if (flag == "--widths") {
      options.widths = bench::integer_list(value);
    } else if (flag == "--tasks") {
      options.tasks = bench::integer_list(value);
    } else if (flag == "--warmup") {
      options.warmup = std::stoi(value);
    } else if (flag == "--runs") {
      options.runs = std::stoi(value);
    } else if (flag == "--iterations") {
      options.iterations = std::stoi(value);
    } else if (flag == "--json") {
      options.json_path = value;
    } else {
      return false;
    }
    return true;
  });
  if (options.widths.size() < 2 || options.runs < 1 || options.iterations < 1) {
    throw std::invalid_argument(
        std::string("need at least two widths, one run and one iteration\n") + kUsage);
  }
  return options;
}

// Device memory for `count` values of T, released at scope exit.
template <typename T>
class Buffer {
 public:
  Buffer(kernels::Device device, std::size_t count)
      : device_(device),
        data_(static_cast<T*>(
            kernels::allocate(device, std::max<std::size_t>(count, 1) * sizeof(T)))),
        count_(count) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { kernels::release(device_, data_); }
  T* data() { return data_; }
  void upload(const std::vector<T>& host) {
    kernels::copy_bytes(device_, data_, kernels::Device::cpu(), host.data(), count_ * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    kernels::copy_bytes(kernels::Device::cpu(), host.data(), device_, data_, count_ * sizeof(T));
    return host;
  }

 private:
  kernels::Device device_;
  T* data_;
  std::size_t count_;
};

// Seconds per call: median over runs of (iterations calls), after warm-up.
template <typename Call>
double time_call(const kernels::Context& ctx, const BenchOptions& options, Call&& call) {
  for (int i = 0; i < options.warmup; ++i) call();
  std::vector<double> seconds;
  for (int run = 0; run < options.runs; ++run) {
#if defined(DRGRAD_WITH_CUDA)
    if (ctx.device.is_cuda()) {
      cudaEvent_t start, stop;
      DRGRAD_CUDA_CHECK(cudaEventCreate(&start));
      DRGRAD_CUDA_CHECK(cudaEventCreate(&stop));
      DRGRAD_CUDA_CHECK(cudaEventRecord(start, static_cast<cudaStream_t>(ctx.stream)));
      for (int i = 0; i < options.iterations; ++i) call();
      DRGRAD_CUDA_CHECK(cudaEventRecord(stop, static_cast<cudaStream_t>(ctx.stream)));
      DRGRAD_CUDA_CHECK(cudaEventSynchronize(stop));
      float milliseconds = 0;
      DRGRAD_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, start, stop));
      DRGRAD_CUDA_CHECK(cudaEventDestroy(start));
      DRGRAD_CUDA_CHECK(cudaEventDestroy(stop));
      seconds.push_back(milliseconds * 1e-3 / options.iterations);
      continue;
    }
#endif
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < options.iterations; ++i) call();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
        options.iterations);
  }
  return bench::median(seconds);
}

}  // namespace

int main(int argc, char** argv) try {
  // Whole lines reach the log even when a timeout kills the run (stdout is a pipe or file there).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const BenchOptions options = parse(argc, argv);
  const kernels::Device device = kernels::parse_device(options.device);
  if (bench::skip_without_device(device, "task_gradient_gram_bench")) return 0;
  kernels::Context ctx;
  ctx.device = device;
  bench::JsonLines json(options.json_path);

  std::printf("# task_gradient_gram_bench %s, %s\n", bench::utc_now().c_str(),
              bench::build_flags().c_str());
#if defined(DRGRAD_WITH_CUDA)
  if (device.is_cuda()) bench::describe_device(device.index).print(device.index);
#endif
  std::printf("# device %s, batch %lld, warm-up %d, %d runs of %d calls, median per call\n",
              device.to_string().c_str(), static_cast<long long>(options.batch), options.warmup,
              options.runs, options.iterations);
  std::printf(
      "# flops = 2 K B in out (products) + K^2 in out (Gram, double); bytes = X + dY read once, "
      "dW + db written once;\n# the batched path reads dW + db once more for its Gram "
      "(counted in its bytes)\n");
  std::printf("# %-9s %2s %-8s %10s %9s %9s %12s %12s\n", "layer", "K", "path", "time_us",
              "GFLOP/s", "GB/s", "gram_diff", "weight_diff");

  std::mt19937 random(1);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  auto random_vector = [&](std::size_t n) {
    std::vector<float> values(n);
    for (float& v : values) v = uniform(random);
    return values;
  };
  const std::int64_t batch = options.batch;
  for (std::size_t layer = 0; layer + 1 < options.widths.size(); ++layer) {
    const std::int64_t in = options.widths[layer], out = options.widths[layer + 1];
    for (const std::int64_t tasks : options.tasks) {
      const kernels::TaskGradientShape shape{tasks, batch, in, out};
      Buffer<float> x(device, batch * in), dy(device, tasks * batch * out);
      Buffer<float> weight(device, tasks * in * out), bias(device, tasks * out);
      Buffer<double> gram(device, tasks * tasks);
      x.upload(random_vector(batch * in));
      dy.upload(random_vector(tasks * batch * out));
      const double flops = 2.0 * tasks * batch * in * out + double(tasks * tasks) * in * out;
      const double io_bytes = 4.0 * (batch * in + tasks * batch * out + tasks * (in * out + out));
      std::vector<double> reference_gram;
      std::vector<float> reference_weight;
      const std::vector<kernels::TaskGramPath> paths =
          device.is_cuda()
              ? std::vector<kernels::TaskGramPath>{kernels::TaskGramPath::kFusedKernel,
                                                   kernels::TaskGramPath::kBatchedGemmThenGram}
              : std::vector<kernels::TaskGramPath>{kernels::TaskGramPath::kFusedKernel};
      for (const kernels::TaskGramPath path : paths) {
        kernels::set_task_gram_path(path);
        const bool fused =
            path == kernels::TaskGramPath::kFusedKernel && tasks <= kernels::kMaxFusedGramTasks;
        auto call = [&] {
          kernels::task_gradients_with_gram<float>(
              ctx, shape, x.data(), dy.data(), 0.f,
              {weight.data(), bias.data(), gram.data(), gram.data()},
              kernels::GramUpdate::kOverwrite);
        };
        const double seconds = time_call(ctx, options, call);
        call();
        std::vector<double> host_gram(tasks * tasks);
        kernels::read_task_gram(ctx, gram.data(), tasks, host_gram.data());
        const std::vector<float> host_weight = weight.download();
        double gram_diff = 0, weight_diff = 0;
        if (reference_gram.empty()) {
          reference_gram = host_gram;
          reference_weight = host_weight;
        } else {
          // On the Cauchy-Schwarz scale of each entry; weights relative to the largest |dW|.
          for (std::int64_t i = 0; i < tasks; ++i) {
            for (std::int64_t j = 0; j < tasks; ++j) {
              const double scale =
                  std::sqrt(reference_gram[i * tasks + i] * reference_gram[j * tasks + j]) + 1e-300;
              gram_diff = std::max(
                  gram_diff,
                  std::abs(host_gram[i * tasks + j] - reference_gram[i * tasks + j]) / scale);
            }
          }
          float largest = 0;
          for (float v : reference_weight) largest = std::max(largest, std::abs(v));
          for (std::size_t e = 0; e < host_weight.size(); ++e) {
            weight_diff =
                std::max(weight_diff, double(std::abs(host_weight[e] - reference_weight[e])) /
                                          (double(largest) + 1e-30));
          }
        }
        const double bytes = io_bytes + (fused ? 0.0 : 4.0 * tasks * (in * out + out));
        const char* path_name = !device.is_cuda() ? "cpu" : fused ? "fused" : "batched";
        const std::string layer_name = std::to_string(in) + "x" + std::to_string(out);
        std::printf("  %-9s %2lld %-8s %10.1f %9.1f %9.1f %12.3g %12.3g\n", layer_name.c_str(),
                    static_cast<long long>(tasks), path_name, seconds * 1e6, flops / seconds * 1e-9,
                    bytes / seconds * 1e-9, gram_diff, weight_diff);
        json.write("\"bench\": \"task_gradient_gram\", \"device\": " +
                   bench::json_string(device.to_string()) + ", \"layer\": " +
                   bench::json_string(layer_name) + ", \"batch\": " + std::to_string(batch) +
                   ", \"tasks\": " + std::to_string(tasks) + ", \"path\": " +
                   bench::json_string(path_name) + ", \"seconds\": " + std::to_string(seconds) +
                   ", \"flops\": " + std::to_string(flops) + ", \"bytes\": " +
                   std::to_string(bytes) + ", \"gram_difference\": " + std::to_string(gram_diff) +
                   ", \"weight_difference\": " + std::to_string(weight_diff));
      }
      kernels::set_task_gram_path(kernels::TaskGramPath::kFusedKernel);
    }
  }
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "task_gradient_gram_bench: %s\n", error.what());
  return 1;
}
