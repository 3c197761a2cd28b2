// The two ceilings GPU kernels are reported against (the device tool's METHOD.md): device memory
// bandwidth, from a large device-to-device copy counting bytes read plus bytes written, and the
// matrix-product rate, from cuBLAS on 8192^3 products in fp32, tf32 and bf16 (fp32 accumulate),
// all on random data, each checked against a host reference in the same run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/gpu_bench_support.h"

#if defined(DRGRAD_WITH_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#include "kernels/core/memory.h"
#endif

namespace {

namespace bench = drgrad::bench;

struct BenchOptions {
  std::string device = "cuda";
  std::size_t copy_bytes = std::size_t(1) << 30;
  std::int64_t gemm_size = 8192;
  int warmup = 3;
  int repeats = 20;
  std::uint64_t seed = 1;
  std::string json_path;
};

const char* kUsage =
    "usage: gpu_ceilings_bench [options]\n"
    "  --device cuda|cuda:N  (cuda; without a device: SKIPPED, exit 0)\n"
    "  --copy-mib N          size of the copied buffer in MiB (1024)\n"
    "  --gemm-size N         M = N = K of the products (8192)\n"
    "  --warmup N            untimed repetitions first (3)\n"
    "  --repeats N           timed repetitions, one event pair each; median (20)\n"
    "  --seed S              (1)\n"
    "  --json FILE           append one JSON line per measurement\n";

BenchOptions parse_arguments(int argc, char** argv) {
  BenchOptions options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--device") {
      options.device = value;
    } else if (flag == "--copy-mib") {
      options.copy_bytes = std::stoull(value) << 20;
    } else if (flag == "--gemm-size") {
      options.gemm_size = std::stoll(value);
    } else if (flag == "--warmup") {
      options.warmup = std::stoi(value);
    } else if (flag == "--repeats") {
      options.repeats = std::stoi(value);
    } else if (flag == "--seed") {
      options.seed = std::stoull(value);
    } else if (flag == "--json") {
      options.json_path = value;
    } else {
      return false;
    }
    return true;
  });
  if (options.copy_bytes == 0 || options.gemm_size <= 0 || options.warmup < 0 ||
      options.repeats <= 0) {
    throw std::invalid_argument("--copy-mib, --gemm-size and --repeats must be positive");
  }
  return options;
}

#if defined(DRGRAD_WITH_CUDA)

// Times `work` (which queues device work on the default stream) `repeats` times with one event
// pair each, after `warmup` untimed calls; returns each repetition's seconds.
template <typename Work>
std::vector<double> time_with_events(int warmup, int repeats, Work&& work) {
  for (int i = 0; i < warmup; ++i) work();
  DRGRAD_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t start = nullptr, stop = nullptr;
  DRGRAD_CUDA_CHECK(cudaEventCreate(&start));
  DRGRAD_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    DRGRAD_CUDA_CHECK(cudaEventRecord(start));
    work();
    DRGRAD_CUDA_CHECK(cudaEventRecord(stop));
    DRGRAD_CUDA_CHECK(cudaEventSynchronize(stop));
    float milliseconds = 0;
    DRGRAD_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, start, stop));
    seconds.push_back(1e-3 * milliseconds);
  }
  DRGRAD_CUDA_CHECK(cudaEventDestroy(start));
  DRGRAD_CUDA_CHECK(cudaEventDestroy(stop));
  return seconds;
}

// Device memory released at scope exit.
struct DeviceMemory {
  drgrad::kernels::Device device;
  void* data = nullptr;
  DeviceMemory(drgrad::kernels::Device where, std::size_t bytes)
      : device(where), data(drgrad::kernels::allocate(where, bytes)) {}
  ~DeviceMemory() {
    try {
      drgrad::kernels::release(device, data);
    } catch (...) {  // a destructor must not throw; the error has been reported already
    }
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

std::vector<float> random_floats(std::mt19937_64& random, std::size_t n) {
  std::uniform_real_distribution<float> distribution(-1.0f, 1.0f);
  std::vector<float> values(n);
  for (float& value : values) value = distribution(random);
  return values;
}

// fp32 -> bf16 bits, round to nearest even (inputs here are finite).
std::uint16_t to_bfloat16(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}
float from_bfloat16(std::uint16_t half) {
  const std::uint32_t bits = static_cast<std::uint32_t>(half) << 16;
  float value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

struct Measurement {
  std::string name;
  std::vector<double> seconds;
  double work = 0;  // bytes moved or floating-point operations, per repetition
  const char* unit = "";
  double scale = 1;  // of the printed rate (1e9: GB/s, 1e12: TFLOP/s)
  bool check_passed = false;
  std::string check;
};

void report(const Measurement& m, const std::string& device_json, drgrad::bench::JsonLines& json) {
  const double median_seconds = drgrad::bench::median(m.seconds);
  double best = m.seconds.front();
  for (const double s : m.seconds) best = std::min(best, s);
  const double rate = m.work / median_seconds / m.scale;
  std::printf("%-18s %12.4f %12.4f %12.1f %-8s %s: %s\n", m.name.c_str(), 1e3 * median_seconds,
              1e3 * best, rate, m.unit, m.check_passed ? "ok" : "CHECK FAILED", m.check.c_str());
  std::ostringstream fields;
  fields << "\"benchmark\": \"gpu_ceiling\", \"name\": " << drgrad::bench::json_string(m.name)
         << ", \"date\": " << drgrad::bench::json_string(drgrad::bench::utc_now()) << ", "
         << device_json << ", \"work_per_repetition\": " << m.work
         << ", \"unit\": " << drgrad::bench::json_string(m.unit) << ", \"seconds\": [";
  for (std::size_t i = 0; i < m.seconds.size(); ++i) fields << (i ? ", " : "") << m.seconds[i];
  fields << "], \"median_seconds\": " << median_seconds << ", \"rate\": " << rate
         << ", \"check\": {\"passed\": " << (m.check_passed ? "true" : "false")
         << ", \"detail\": " << drgrad::bench::json_string(m.check) << "}";
  json.write(fields.str());
}

// Device-to-device copy of options.copy_bytes; bandwidth counts the bytes read plus written.
Measurement measure_copy(const BenchOptions& options, drgrad::kernels::Device device,
                         std::mt19937_64& random) {
  const std::size_t count = options.copy_bytes / sizeof(float);
  const std::size_t bytes = count * sizeof(float);
  const std::vector<float> host = random_floats(random, count);
  DeviceMemory source(device, bytes), destination(device, bytes);
  drgrad::kernels::copy_bytes(device, source.data, drgrad::kernels::Device::cpu(), host.data(),
                              bytes);
  Measurement m;
  m.name = "copy d2d";
  m.unit = "GB/s";
  m.scale = 1e9;
  m.work = 2.0 * static_cast<double>(bytes);
  m.seconds = time_with_events(options.warmup, options.repeats, [&] {
    DRGRAD_CUDA_CHECK(
        cudaMemcpyAsync(destination.data, source.data, bytes, cudaMemcpyDeviceToDevice));
  });
  // The copy must be exact: compare 4096 positions drawn at random.
  std::size_t wrong = 0;
  std::uniform_int_distribution<std::size_t> position(0, count - 1);
  for (int i = 0; i < 4096; ++i) {
    const std::size_t at = position(random);
    float value = 0;
    drgrad::kernels::copy_bytes(drgrad::kernels::Device::cpu(), &value, device,
                                static_cast<const float*>(destination.data) + at, sizeof(float));
    if (std::memcmp(&value, &host[at], sizeof(float)) != 0) ++wrong;
  }
  m.check_passed = wrong == 0;
  m.check = std::to_string(wrong) + " of 4096 sampled elements differ";
  return m;
}

enum class GemmKind { kFp32, kTf32, kBf16 };

// C = A B (column-major n x n, fp32 output) through cublasGemmEx; checked at 64 random entries
// against a double-precision dot product of the operands as the device saw them, with an error
// bound relative to sum |a_ik b_kj| that fits the precision.
Measurement measure_gemm(const BenchOptions& options, drgrad::kernels::Device device, GemmKind kind,
                         std::vector<float> a, std::vector<float> b, std::mt19937_64& random) {
  const std::int64_t n = options.gemm_size;
  const std::size_t elements = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  const bool bf16 = kind == GemmKind::kBf16;
  const std::size_t operand_bytes = elements * (bf16 ? 2 : 4);
  DeviceMemory device_a(device, operand_bytes), device_b(device, operand_bytes),
      device_c(device, elements * sizeof(float));
  if (bf16) {
    std::vector<std::uint16_t> a16(elements), b16(elements);
    for (std::size_t i = 0; i < elements; ++i) {
      a16[i] = to_bfloat16(a[i]);
      b16[i] = to_bfloat16(b[i]);
      a[i] = from_bfloat16(a16[i]);  // the reference multiplies what the device multiplies
      b[i] = from_bfloat16(b16[i]);
    }
    drgrad::kernels::copy_bytes(device, device_a.data, drgrad::kernels::Device::cpu(), a16.data(),
                                operand_bytes);
    drgrad::kernels::copy_bytes(device, device_b.data, drgrad::kernels::Device::cpu(), b16.data(),
                                operand_bytes);
  } else {
    drgrad::kernels::copy_bytes(device, device_a.data, drgrad::kernels::Device::cpu(), a.data(),
                                operand_bytes);
    drgrad::kernels::copy_bytes(device, device_b.data, drgrad::kernels::Device::cpu(), b.data(),
                                operand_bytes);
  }
  cublasHandle_t handle = nullptr;
  DRGRAD_CUBLAS_CHECK(cublasCreate(&handle));
  // fp32: the handle's default math mode, which keeps fp32 products off the tf32 tensor cores.
  const cublasComputeType_t compute =
      kind == GemmKind::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cudaDataType_t operand_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const float alpha = 1.0f, beta = 0.0f;
  const int size = static_cast<int>(n);
  Measurement m;
  m.name = kind == GemmKind::kFp32   ? "gemm fp32"
           : kind == GemmKind::kTf32 ? "gemm tf32"
                                     : "gemm bf16";
  m.unit = "TFLOP/s";
  m.scale = 1e12;
  m.work = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  m.seconds = time_with_events(options.warmup, options.repeats, [&] {
    DRGRAD_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha,
                                     device_a.data, operand_type, size, device_b.data, operand_type,
                                     size, &beta, device_c.data, CUDA_R_32F, size, compute,
                                     CUBLAS_GEMM_DEFAULT));
  });
  DRGRAD_CUBLAS_CHECK(cublasDestroy(handle));

  // Column-major: C(i, j) = sum_k A(i, k) B(k, j), A(i, k) = a[i + k n], B(k, j) = b[k + j n].
  // tf32 rounds each operand to 10 mantissa bits (relative 2^-11 each); bf16 operands are exact
  // here (rounded on the host) and only the fp32 accumulation errs.
  // An fp32 sum of 8192 terms errs by about sqrt(K) 2^-24 ~ 5e-6 of sum|a b|; a wrong product
  // errs by order 1.
  const double tolerance = kind == GemmKind::kTf32 ? 2e-3 : 1e-4;
  std::uniform_int_distribution<std::int64_t> index(0, n - 1);
  double worst = 0;
  int wrong = 0;
  for (int sample = 0; sample < 64; ++sample) {
    const std::int64_t i = index(random), j = index(random);
    double exact = 0, magnitude = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      const double product = static_cast<double>(a[i + k * n]) * b[k + j * n];
      exact += product;
      magnitude += std::abs(product);
    }
    float got = 0;
    drgrad::kernels::copy_bytes(drgrad::kernels::Device::cpu(), &got, device,
                                static_cast<const float*>(device_c.data) + i + j * n,
                                sizeof(float));
    const double error = std::abs(static_cast<double>(got) - exact) / magnitude;
    worst = std::max(worst, std::isnan(error) ? INFINITY : error);
    if (!(error <= tolerance)) ++wrong;
  }
  char detail[160];
  std::snprintf(detail, sizeof(detail),
                "%d of 64 sampled entries off by more than %.0e of sum|a b|; worst %.2e", wrong,
                tolerance, worst);
  m.check_passed = wrong == 0;
  m.check = detail;
  return m;
}

#endif  // DRGRAD_WITH_CUDA

int run(const BenchOptions& options) {
  const drgrad::kernels::Device device = drgrad::kernels::parse_device(options.device);
  if (!device.is_cuda()) {
    throw std::invalid_argument("gpu_ceilings_bench measures a CUDA device: use --device cuda");
  }
  if (drgrad::bench::skip_without_device(device, "gpu_ceilings_bench")) return 0;
#if defined(DRGRAD_WITH_CUDA)
  DRGRAD_CUDA_CHECK(cudaSetDevice(device.index));
  const auto description = drgrad::bench::describe_device(device.index);
  std::printf("# gpu_ceilings_bench (drgrad)  %s\n", drgrad::bench::utc_now().c_str());
  description.print(device.index);
  std::printf(
      "# method: random inputs; %d warm-up and %d timed repetitions, one CUDA event pair each, "
      "median (and best); copy: cudaMemcpyAsync of %.0f MiB, rate = (bytes read + written) / "
      "time; gemm: cublasGemmEx %lld^3, rate = 2 n^3 / time\n",
      options.warmup, options.repeats, static_cast<double>(options.copy_bytes) / (1 << 20),
      static_cast<long long>(options.gemm_size));
  std::printf("%-18s %12s %12s %12s %-8s %s\n", "measure", "median_ms", "best_ms", "rate", "unit",
              "check");
  drgrad::bench::JsonLines json(options.json_path);
  const std::string device_json = description.json();
  std::mt19937_64 random(options.seed);
  bool all_passed = true;
  const Measurement copy = measure_copy(options, device, random);
  report(copy, device_json, json);
  all_passed = copy.check_passed;
  // One pair of random operands for the three products (each takes its own copy).
  const std::size_t elements =
      static_cast<std::size_t>(options.gemm_size) * static_cast<std::size_t>(options.gemm_size);
  const std::vector<float> a = random_floats(random, elements);
  const std::vector<float> b = random_floats(random, elements);
  for (const GemmKind kind : {GemmKind::kFp32, GemmKind::kTf32, GemmKind::kBf16}) {
    const Measurement m = measure_gemm(options, device, kind, a, b, random);
    report(m, device_json, json);
    all_passed = all_passed && m.check_passed;
  }
  return all_passed ? 0 : 1;
#else
  return 0;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  // Whole lines reach the log even when a timeout kills the run (stdout is a pipe or file there).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run(parse_arguments(argc, argv));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "gpu_ceilings_bench: %s\n", error.what());
    return 2;
  }
}
