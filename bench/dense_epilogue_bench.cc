// Dense layers on the GPU: the fused dense op through cuBLASLt epilogues against a cuBLAS product
// followed by drgrad's bias+activation kernel, and (when built with cuDNN) cuDNN's fused
// matmul+bias+relu graph, for the industrial-shaped layers. Warm-up, several timed runs, median;
// the implementations' outputs are compared in the same run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_flags.h"
#include "kernels/core/device.h"
#include "kernels/core/memory.h"
#include "kernels/dense/dense_layer.h"

#if defined(DRGRAD_WITH_CUDA)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "bench/dense_cudnn_graph.h"
#include "kernels/core/cuda_check.h"
#endif

namespace {

namespace bench = drgrad::bench;

namespace kernels = drgrad::kernels;

struct BenchOptions {
  std::string device = "cuda";
  std::int64_t batch = 8192;
  std::vector<std::int64_t> widths{416, 512, 256};  // layers 416->512 and 512->256
  std::vector<std::string> precisions{"fp32", "tf32", "bf16"};
  int warmup = 10;
  int runs = 7;
  int iterations = 20;  // calls per timed run
  std::string json_path;
};

const char* kUsage =
    "usage: dense_epilogue_bench [options]\n"
    "  --device cuda|cuda:N  the device to time (cuda); without one: SKIPPED, exit 0\n"
    "  --batch N             rows per product (8192)\n"
    "  --widths A,B,C        layer widths: layers A->B, B->C, ... (416,512,256)\n"
    "  --precision P,...     fp32, tf32, bf16 (all three)\n"
    "  --warmup N            untimed calls first (10)\n"
    "  --runs R              timed runs; the median is reported (7)\n"
    "  --iterations N        calls per timed run (20)\n"
    "  --json FILE           also write the rows as JSON\n";

BenchOptions parse(int argc, char** argv) {
  BenchOptions options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--device") {
      options.device = value;
    } else if (flag == "--batch") {
      options.batch = std::stoll(value);
    } else if (flag == "--widths") {
      options.widths = bench::integer_list(value);
    } else if (flag == "--precision") {
      options.precisions = bench::split_list(value);
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
  if (options.batch < 1 || options.widths.size() < 2 || options.runs < 1 ||
      options.iterations < 1 || options.warmup < 0) {
    throw std::invalid_argument(std::string("need batch >= 1, at least two widths, runs >= 1, "
                                            "iterations >= 1 and warmup >= 0\n") +
                                kUsage);
  }
  for (const auto& precision : options.precisions) kernels::parse_matmul_precision(precision);
  return options;
}

#if defined(DRGRAD_WITH_CUDA)

using kernels::DenseEpilogue;
using kernels::DenseShape;
using kernels::cuda::DenseImplementation;

// Device memory for one float array, filled from the host.
class DeviceArray {
 public:
  DeviceArray(kernels::Device device, std::size_t size)
      : device_(device),
        size_(size),
        data_(static_cast<float*>(kernels::allocate(device, size * sizeof(float)))) {}
  DeviceArray(kernels::Device device, const std::vector<float>& values)
      : DeviceArray(device, values.size()) {
    kernels::copy_bytes(device_, data_, kernels::Device::cpu(), values.data(),
                        size_ * sizeof(float));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    try {
      kernels::release(device_, data_);
    } catch (...) {  // nothing useful to do in a destructor
    }
  }
  float* data() { return data_; }
  std::vector<float> download() const {
    std::vector<float> values(size_);
    kernels::copy_bytes(kernels::Device::cpu(), values.data(), device_, data_,
                        size_ * sizeof(float));
    return values;
  }

 private:
  kernels::Device device_;
  std::size_t size_;
  float* data_;
};

std::vector<float> uniform(std::mt19937& random, std::size_t n, float low, float high) {
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(n);
  for (float& value : values) value = distribution(random);
  return values;
}

// Median milliseconds per call of `body` on `stream`: warm-up calls, then `runs` runs of
// `iterations` calls each, timed with events.
template <typename Body>
double median_milliseconds(cudaStream_t stream, const BenchOptions& options, Body&& body) {
  for (int i = 0; i < options.warmup; ++i) body();
  cudaEvent_t start = nullptr, stop = nullptr;
  DRGRAD_CUDA_CHECK(cudaEventCreate(&start));
  DRGRAD_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> times;
  for (int run = 0; run < options.runs; ++run) {
    DRGRAD_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < options.iterations; ++i) body();
    DRGRAD_CUDA_CHECK(cudaEventRecord(stop, stream));
    DRGRAD_CUDA_CHECK(cudaEventSynchronize(stop));
    float milliseconds = 0.f;
    DRGRAD_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, start, stop));
    times.push_back(double(milliseconds) / options.iterations);
  }
  DRGRAD_CUDA_CHECK(cudaEventDestroy(start));
  DRGRAD_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// max |a - b| / max(1, max |b|).
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double difference = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    difference = std::max(difference, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return difference / scale;
}

struct Row {
  std::string layer, precision, epilogue, pass, implementation;
  double milliseconds = 0, tflops = 0, difference = 0;
  std::string note;

  Row(std::string layer_, std::string precision_, std::string epilogue_, std::string pass_,
      std::string implementation_)
      : layer(std::move(layer_)),
        precision(std::move(precision_)),
        epilogue(std::move(epilogue_)),
        pass(std::move(pass_)),
        implementation(std::move(implementation_)) {}
};

void print_row(const Row& row) {
  std::printf("%-10s %-5s %-13s %-8s %-16s %10.4f %9.2f %10.2e  %s\n", row.layer.c_str(),
              row.precision.c_str(), row.epilogue.c_str(), row.pass.c_str(),
              row.implementation.c_str(), row.milliseconds, row.tflops, row.difference,
              row.note.c_str());
}

int run(const BenchOptions& options, const kernels::Device device) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device.index));
  cudaDeviceProp properties{};
  DRGRAD_CUDA_CHECK(cudaGetDeviceProperties(&properties, device.index));
  int runtime_version = 0;
  DRGRAD_CUDA_CHECK(cudaRuntimeGetVersion(&runtime_version));
  // A blocking stream: the arrays are allocated and uploaded on the legacy default stream
  // (kernels::allocate / copy_bytes, which return before the upload lands), and only a blocking
  // stream is ordered after that work; a non-blocking one could read x and W before they arrive.
  cudaStream_t stream = nullptr;
  DRGRAD_CUDA_CHECK(cudaStreamCreate(&stream));

  std::printf("# dense_epilogue_bench: fused dense layer on %s\n", device.to_string().c_str());
  std::printf("# device: %s, sm_%d%d, %d SMs, %.1f GiB\n", properties.name, properties.major,
              properties.minor, properties.multiProcessorCount,
              double(properties.totalGlobalMem) / double(1u << 30));
  std::printf("# CUDA runtime %d, cuBLASLt %zu", runtime_version, cublasLtGetVersion());
#if defined(DRGRAD_WITH_CUDNN)
  std::printf(", cuDNN %zu\n", cudnnGetVersion());
#else
  std::printf(", cuDNN not built in (configure with cuDNN found, or CUDNN_ROOT=...)\n");
#endif
  std::printf("# batch %lld, widths", static_cast<long long>(options.batch));
  for (auto width : options.widths) std::printf(" %lld", static_cast<long long>(width));
  std::printf("; warm-up %d, %d runs of %d calls, median per call\n", options.warmup, options.runs,
              options.iterations);
  std::printf(
      "# forward: y = act(x W + b); backward: dx, dW (+=), db (+=) for one upstream; "
      "bwd+relu': backward whose dx also goes through the previous (relu) layer's "
      "derivative and bias gradient\n");
  std::printf(
      "# lt = cuBLASLt with the epilogue fused where it has one; gemm+kernel = cuBLAS "
      "product then drgrad's fused bias/activation kernel\n");
  std::printf(
      "# diff = max |y - y(gemm+kernel)| / max(1, max |y(gemm+kernel)|) on the same "
      "inputs\n");
  std::printf("%-10s %-5s %-13s %-8s %-16s %10s %9s %10s  %s\n", "layer", "prec", "epilogue",
              "pass", "implementation", "ms", "TFLOP/s", "diff", "note");

  std::mt19937 random(1);
  std::vector<Row> rows;
  for (std::size_t layer = 0; layer + 1 < options.widths.size(); ++layer) {
    const DenseShape shape{options.batch, options.widths[layer], options.widths[layer + 1]};
    const std::string layer_name = std::to_string(shape.in) + "->" + std::to_string(shape.out);
    const std::size_t outputs = shape.batch * shape.out;
    DeviceArray x(device, uniform(random, shape.batch * shape.in, -1.f, 1.f));
    DeviceArray weight(device, uniform(random, shape.in * shape.out, -0.1f, 0.1f));
    DeviceArray bias(device, uniform(random, shape.out, -0.1f, 0.1f));
    DeviceArray dy(device, uniform(random, outputs, -1.f, 1.f));
    DeviceArray y(device, outputs), y_reference(device, outputs), z(device, outputs),
        d_pre(device, outputs), dx(device, shape.batch * shape.in),
        d_weight(device, shape.in * shape.out), d_bias(device, shape.out);
    const double forward_flops = 2.0 * shape.batch * shape.in * shape.out;
    // Behind the first layer, the previous layer (bias+relu) is this layer's producer: its
    // forward writes x and, through cuBLASLt, the relu mask that this layer's backward can apply.
    const bool has_producer = layer > 0;
    const DenseShape producer_shape{options.batch, has_producer ? options.widths[layer - 1] : 1,
                                    shape.in};
    DeviceArray producer_x(device,
                           uniform(random, producer_shape.batch * producer_shape.in, -1.f, 1.f));
    DeviceArray producer_weight(
        device, uniform(random, producer_shape.in * producer_shape.out, -0.1f, 0.1f));
    DeviceArray producer_bias(device, uniform(random, producer_shape.out, -0.1f, 0.1f));
    DeviceArray producer_d_pre(device, shape.batch * shape.in), producer_d_bias(device, shape.in),
        relu_mask(device, std::size_t(kernels::dense_relu_mask_bytes(producer_shape) + 3) / 4);
    for (const std::string& precision_name : options.precisions) {
      kernels::Context ctx;
      ctx.device = device;
      ctx.stream = stream;
      ctx.matmul_precision = kernels::parse_matmul_precision(precision_name);
      for (DenseEpilogue epilogue :
           {DenseEpilogue::kBias, DenseEpilogue::kBiasRelu, DenseEpilogue::kBiasMish}) {
        const std::string epilogue_name = kernels::dense_epilogue_name(epilogue);
        auto forward = [&](DenseImplementation implementation, float* out) {
          kernels::cuda::dense_forward(ctx, shape, epilogue, x.data(), weight.data(), bias.data(),
                                       out, z.data(), nullptr, implementation);
        };
        // The reference output first, then each implementation timed and compared with it.
        forward(DenseImplementation::kGemmThenKernel, y_reference.data());
        DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
        const std::vector<float> reference = y_reference.download();
        const bool fused = kernels::cuda::dense_forward_epilogue_fused(
            ctx, shape, epilogue, x.data(), weight.data(), bias.data(), y.data());
        for (DenseImplementation implementation :
             {DenseImplementation::kLtEpilogue, DenseImplementation::kGemmThenKernel}) {
          const bool lt = implementation == DenseImplementation::kLtEpilogue;
          Row row{layer_name, precision_name, epilogue_name, "forward", lt ? "lt" : "gemm+kernel"};
          row.milliseconds =
              median_milliseconds(stream, options, [&] { forward(implementation, y.data()); });
          row.tflops = forward_flops / (row.milliseconds * 1e9);
          DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
          row.difference = relative_difference(y.download(), reference);
          if (lt) row.note = fused ? "epilogue fused" : "no Lt epilogue: product, then kernel";
          print_row(row);
          rows.push_back(row);
        }
        for (DenseImplementation implementation :
             {DenseImplementation::kLtEpilogue, DenseImplementation::kGemmThenKernel}) {
          const bool lt = implementation == DenseImplementation::kLtEpilogue;
          Row row{layer_name, precision_name, epilogue_name, "backward", lt ? "lt" : "gemm+kernel"};
          forward(DenseImplementation::kGemmThenKernel, y.data());
          row.milliseconds = median_milliseconds(stream, options, [&] {
            kernels::cuda::dense_backward(ctx, shape, epilogue, 1, x.data(), weight.data(),
                                          y.data(), z.data(), dy.data(), d_pre.data(), dx.data(),
                                          d_weight.data(), d_bias.data(), true, implementation);
          });
          row.tflops = 2 * forward_flops / (row.milliseconds * 1e9);
          if (lt && epilogue == DenseEpilogue::kBias)
            row.note = "bias gradient by BGRADA if offered";
          print_row(row);
          rows.push_back(row);
        }
        if (has_producer && epilogue != DenseEpilogue::kBiasMish) {
          // This layer's backward, then the producer's relu derivative and bias gradient: in the
          // dx product's epilogue (DRELU_BGRAD with the producer's mask) or in a fused kernel.
          kernels::ReluMask mask{relu_mask.data(), false};
          kernels::cuda::dense_forward(ctx, producer_shape, DenseEpilogue::kBiasRelu,
                                       producer_x.data(), producer_weight.data(),
                                       producer_bias.data(), x.data(), nullptr, &mask);
          forward(DenseImplementation::kGemmThenKernel, y.data());
          for (DenseImplementation implementation :
               {DenseImplementation::kLtEpilogue, DenseImplementation::kGemmThenKernel}) {
            const bool lt = implementation == DenseImplementation::kLtEpilogue;
            Row row{layer_name, precision_name, epilogue_name, "bwd+relu'",
                    lt ? "lt" : "gemm+kernel"};
            const void* producer_mask = lt && mask.written ? relu_mask.data() : nullptr;
            row.milliseconds = median_milliseconds(stream, options, [&] {
              kernels::cuda::dense_backward_into_relu_producer(
                  ctx, shape, epilogue, x.data(), weight.data(), y.data(), z.data(), dy.data(),
                  d_pre.data(), d_weight.data(), d_bias.data(), true, producer_mask,
                  producer_d_pre.data(), producer_d_bias.data(), implementation);
            });
            row.tflops = 2 * forward_flops / (row.milliseconds * 1e9);
            if (lt) {
              row.note = mask.written ? "producer relu' by DRELU_BGRAD if offered"
                                      : "no relu mask from the producer's forward";
            }
            print_row(row);
            rows.push_back(row);
          }
        }
#if defined(DRGRAD_WITH_CUDNN)
        if (epilogue == DenseEpilogue::kBiasRelu && precision_name != "bf16") {
          Row row{layer_name, precision_name, epilogue_name, "forward", "cudnn graph"};
          drgrad::bench::CudnnDenseReluGraph graph(stream, shape.batch, shape.in, shape.out,
                                                   precision_name == "tf32");
          if (graph.ready()) {
            row.milliseconds = median_milliseconds(stream, options, [&] {
              graph.run(x.data(), weight.data(), bias.data(), y.data());
            });
            row.tflops = forward_flops / (row.milliseconds * 1e9);
            DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
            row.difference = relative_difference(y.download(), reference);
            row.note = graph.engine();
          } else {
            row.milliseconds = row.tflops = row.difference = NAN;
            row.note = "not run: " + graph.why_not();
          }
          print_row(row);
          rows.push_back(row);
        }
#endif
      }
    }
  }
  DRGRAD_CUDA_CHECK(cudaStreamDestroy(stream));

  if (!options.json_path.empty()) {
    std::ofstream json(options.json_path);
    json << "{\"benchmark\": \"dense_epilogue\", \"device\": \"" << properties.name
         << "\", \"batch\": " << options.batch << ", \"rows\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      auto number = [](double v) { return std::isfinite(v) ? std::to_string(v) : "null"; };
      json << "  {\"layer\": \"" << r.layer << "\", \"precision\": \"" << r.precision
           << "\", \"epilogue\": \"" << r.epilogue << "\", \"pass\": \"" << r.pass
           << "\", \"implementation\": \"" << r.implementation
           << "\", \"milliseconds\": " << number(r.milliseconds)
           << ", \"tflops\": " << number(r.tflops) << ", \"difference\": " << number(r.difference)
           << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    json << "]}\n";
  }
  return 0;
}

#endif  // DRGRAD_WITH_CUDA

}  // namespace

int main(int argc, char** argv) {
  // Whole lines reach the log even when a timeout kills the run (stdout is a pipe or file there).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    const BenchOptions options = parse(argc, argv);
    const kernels::Device device = kernels::parse_device(options.device);
    if (!device.is_cuda()) {
      std::cout << "SKIPPED: dense_epilogue_bench times CUDA implementations only; run it with "
                   "--device cuda\n";
      return 0;
    }
    if (kernels::cuda_device_count() <= device.index) {
      std::cout << "SKIPPED: no CUDA device"
                << (kernels::built_with_cuda() ? "" : " (this build has no CUDA backend)") << "\n";
      return 0;
    }
#if defined(DRGRAD_WITH_CUDA)
    return run(options, device);
#endif
  } catch (const std::exception& error) {
    std::cerr << "dense_epilogue_bench: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
