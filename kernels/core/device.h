// Where a tensor lives and where an op runs, plus the execution context every op receives.
// The engine carries these around; only kernels/ looks inside them to pick an implementation.
#pragma once

#include <stdexcept>
#include <string>

namespace drgrad::kernels {

enum class DeviceKind { kCpu, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {DeviceKind::kCuda, index}; }
  bool is_cpu() const { return kind == DeviceKind::kCpu; }
  bool is_cuda() const { return kind == DeviceKind::kCuda; }
  bool operator==(const Device&) const = default;
  std::string to_string() const {
    return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
  }
};

// Parses "cpu", "cuda" or "cuda:N"; throws std::invalid_argument naming the text otherwise.
Device parse_device(const std::string& text);

// How CUDA matrix products compute (storage and accumulation stay fp32 in every mode, so
// parameters remain fp32 master copies): kFp32 plain fp32 products; kTf32 tensor-core products
// with inputs rounded to TF32 (10-bit mantissa); kBf16 tensor-core products with inputs rounded
// to bf16 (7-bit mantissa). The CPU twins always compute in fp32 (or the data's precision).
enum class MatmulPrecision { kFp32, kTf32, kBf16 };

// "fp32", "tf32", "bf16"; throws std::invalid_argument naming the text otherwise.
MatmulPrecision parse_matmul_precision(const std::string& text);
const char* matmul_precision_name(MatmulPrecision precision);

// The context an op runs in: the device, for CUDA the stream (a cudaStream_t kept opaque so
// that CPU-only code needs no CUDA headers; nullptr: the calling thread's current stream on the
// device, kernels/core/stream.h, which is the legacy default stream unless set) and the precision
// of matrix products on CUDA (ignored on the CPU).
struct Context {
  Device device;
  void* stream = nullptr;
  MatmulPrecision matmul_precision = MatmulPrecision::kFp32;

  static Context cpu() { return {}; }
};

// An op asked for something this build or this device cannot do. The message says what and what
// to do instead.
class NotSupportedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// True when this binary was built with the CUDA backend.
bool built_with_cuda();
// Number of CUDA devices usable now (0 without the CUDA backend or without a device).
int cuda_device_count();

}  // namespace drgrad::kernels

// Runs a CUDA twin when the build has the CUDA backend, otherwise throws NotSupportedError.
#if defined(DRGRAD_WITH_CUDA)
#define DRGRAD_CUDA_TWIN(call) call
#else
#define DRGRAD_CUDA_TWIN(call)                                                             \
  throw ::drgrad::kernels::NotSupportedError(                                              \
      "this drgrad build has no CUDA backend; rebuild with -DDRGRAD_CUDA=ON on a machine " \
      "with the CUDA toolkit, or run on device = \"cpu\"")
#endif
