// Shared pieces of the GPU benchmarks: the device and toolkit description they print, medians,
// JSON-lines output, and the "no device" exit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/core/device.h"

#if defined(DRGRAD_WITH_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#endif

namespace drgrad::bench {

inline double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

inline std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

inline std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

inline std::string build_flags() {
#if defined(__OPTIMIZE__) && defined(NDEBUG)
  return "optimised, NDEBUG";
#elif defined(__OPTIMIZE__)
  return "optimised, asserts on";
#else
  return "NOT optimised (Debug?)";
#endif
}

// One JSON object per line, appended to the file named by --json (nothing when empty).
class JsonLines {
 public:
  explicit JsonLines(const std::string& path) {
    if (path.empty()) return;
    out_.open(path, std::ios::app);
    if (!out_) throw std::runtime_error("cannot open " + path + " for writing (--json)");
  }
  // `fields`: the inside of a JSON object, e.g. "\"name\": \"x\", \"value\": 1".
  void write(const std::string& fields) {
    if (out_.is_open()) out_ << "{" << fields << "}\n" << std::flush;
  }

 private:
  std::ofstream out_;
};

// What the benchmarks print about the device ("# gpu: ..." lines) and write to JSON.
struct DeviceDescription {
  std::string name = "none";
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  std::size_t memory_bytes = 0;
  std::size_t l2_bytes = 0;
  int driver_version = 0, runtime_version = 0, cublas_version = 0;

  static std::string version_text(int version) {  // CUDA's 13000 -> "13.0"
    return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
  }
  void print(int device_index) const {
    std::printf(
        "# gpu: cuda:%d %s, compute capability %d.%d, %d multiprocessors, %.1f GiB, L2 "
        "%.1f MiB\n",
        device_index, name.c_str(), compute_major, compute_minor, multiprocessors,
        static_cast<double>(memory_bytes) / (1 << 30), static_cast<double>(l2_bytes) / (1 << 20));
    std::printf("# cuda: driver supports %s, runtime %s, cuBLAS %d\n",
                version_text(driver_version).c_str(), version_text(runtime_version).c_str(),
                cublas_version);
  }
  std::string json() const {
    return "\"gpu\": {\"name\": " + json_string(name) + ", \"compute_capability\": \"" +
           std::to_string(compute_major) + "." + std::to_string(compute_minor) +
           "\", \"multiprocessors\": " + std::to_string(multiprocessors) +
           ", \"memory_bytes\": " + std::to_string(memory_bytes) +
           ", \"driver\": " + json_string(version_text(driver_version)) +
           ", \"runtime\": " + json_string(version_text(runtime_version)) +
           ", \"cublas\": " + std::to_string(cublas_version) + "}";
  }
};

#if defined(DRGRAD_WITH_CUDA)
inline DeviceDescription describe_device(int device_index) {
  DeviceDescription description;
  cudaDeviceProp properties{};
  DRGRAD_CUDA_CHECK(cudaGetDeviceProperties(&properties, device_index));
  description.name = properties.name;
  description.compute_major = properties.major;
  description.compute_minor = properties.minor;
  description.multiprocessors = properties.multiProcessorCount;
  description.memory_bytes = properties.totalGlobalMem;
  description.l2_bytes = static_cast<std::size_t>(properties.l2CacheSize);
  DRGRAD_CUDA_CHECK(cudaDriverGetVersion(&description.driver_version));
  DRGRAD_CUDA_CHECK(cudaRuntimeGetVersion(&description.runtime_version));
  int cublas_version = 0;
  cublasHandle_t handle = nullptr;
  DRGRAD_CUBLAS_CHECK(cublasCreate(&handle));
  DRGRAD_CUBLAS_CHECK(cublasGetVersion(handle, &cublas_version));
  DRGRAD_CUBLAS_CHECK(cublasDestroy(handle));
  description.cublas_version = cublas_version;
  return description;
}
#endif

// The standard exit of a GPU benchmark asked for a device that is not there: a "SKIPPED:" line
// (as the GPU tests print) and status 0, so that scripts on machines without a GPU go on.
inline bool skip_without_device(const kernels::Device& device, const char* benchmark) {
  if (!device.is_cuda()) return false;
  if (!kernels::built_with_cuda()) {
    std::printf("SKIPPED: no CUDA device (%s was built without the CUDA backend)\n", benchmark);
    return true;
  }
  if (kernels::cuda_device_count() <= device.index) {
    std::printf("SKIPPED: no CUDA device (%s asked for %s, %d visible)\n", benchmark,
                device.to_string().c_str(), kernels::cuda_device_count());
    return true;
  }
  return false;
}

}  // namespace drgrad::bench
