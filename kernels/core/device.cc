// Device parsing and the CPU side of device queries.
#include "kernels/core/device.h"

#if defined(DRGRAD_WITH_CUDA)
#include "kernels/core/cuda_check.h"
#endif

namespace drgrad::kernels {

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    // At most 9 digits, so the index fits an int (no std::out_of_range from stoi).
    if (!digits.empty() && digits.size() <= 9 &&
        digits.find_first_not_of("0123456789") == std::string::npos) {
      return Device::cuda(std::stoi(digits));
    }
  }
  throw std::invalid_argument("unknown device '" + text + "': use \"cpu\", \"cuda\" or \"cuda:N\"");
}

MatmulPrecision parse_matmul_precision(const std::string& text) {
  if (text == "fp32") return MatmulPrecision::kFp32;
  if (text == "tf32") return MatmulPrecision::kTf32;
  if (text == "bf16") return MatmulPrecision::kBf16;
  throw std::invalid_argument("unknown matmul precision '" + text +
                              "': use \"fp32\", \"tf32\" or \"bf16\"");
}

const char* matmul_precision_name(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::kFp32:
      return "fp32";
    case MatmulPrecision::kTf32:
      return "tf32";
    case MatmulPrecision::kBf16:
      return "bf16";
  }
  return "?";
}

bool built_with_cuda() {
#if defined(DRGRAD_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#if defined(DRGRAD_WITH_CUDA)
  return cuda::device_count();
#else
  return 0;
#endif
}

}  // namespace drgrad::kernels
