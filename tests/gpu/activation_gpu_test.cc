// GPU tests of kernels/activation/activation.h: every activation's forward and backward on CUDA
// against the CPU twin, on random inputs and on the edge values (NaN, infinities, +-1e30, the
// softplus cut at 20, zero), where the twins must agree on which results are not finite.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/activation/activation.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::Activation;

// Non-finite results must match in kind (NaN, +inf, -inf); finite ones to a few roundings of
// expf, log1pf and tanhf (relative), with an absolute floor for results near zero.
void check_twins_agree(const std::vector<float>& cuda_result, const std::vector<float>& cpu_result,
                       const std::vector<float>& inputs, const std::string& what) {
  REQUIRE(cuda_result.size() == cpu_result.size());
  std::size_t mismatches = 0, first = 0;
  for (std::size_t i = 0; i < cpu_result.size(); ++i) {
    const float got = cuda_result[i], expected = cpu_result[i];
    bool same = false;
    if (std::isnan(expected) || std::isinf(expected)) {
      same = std::isnan(expected) ? std::isnan(got) : got == expected;
    } else {
      same = std::fabs(double(got) - double(expected)) <= 1e-5 * std::fabs(expected) + 1e-6;
    }
    if (!same && mismatches++ == 0) first = i;
  }
  INFO(what << ": " << mismatches << " of " << cpu_result.size() << " differ; first at input "
            << (inputs.empty() ? 0.f : inputs[first % inputs.size()]) << ": CUDA "
            << cuda_result[first] << ", CPU " << cpu_result[first]);
  CHECK(mismatches == 0);
}

const char* activation_text(Activation f) {
  switch (f) {
    case Activation::kIdentity:
      return "identity";
    case Activation::kRelu:
      return "relu";
    case Activation::kMish:
      return "mish";
    case Activation::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

}  // namespace

TEST_CASE("activation forward and backward on CUDA match the CPU twin, NaN and edges included",
          "[gpu][activation]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // The edge values, then random ones over the range where every activation bends.
  std::vector<float> x = {nan,    inf,   -inf, 1e30f, -1e30f, 0.f,   -0.f,   20.f,   20.0001f,
                          19.99f, -20.f, 1.f,  -1.f,  88.f,   -88.f, 1e-30f, -1e-30f};
  const auto spread = random_floats(random, 5000, -30.f, 30.f);
  x.insert(x.end(), spread.begin(), spread.end());
  const auto n = static_cast<std::int64_t>(x.size());
  // The upstream gradient: random, with a NaN where the input is ordinary, so that relu's
  // select (0 where the unit is off, the NaN where it is on) is compared too.
  auto dy = random_floats(random, x.size(), -1.f, 1.f);
  dy[x.size() - 1] = nan;
  dy[x.size() - 2] = nan;

  for (Activation f :
       {Activation::kIdentity, Activation::kRelu, Activation::kMish, Activation::kSigmoid}) {
    const std::string what = activation_text(f);
    std::vector<float> y_cpu(x.size()), dx_cpu(x.size());
    kernels::cpu::activation_forward(f, x.data(), y_cpu.data(), n);
    kernels::cpu::activation_backward(f, x.data(), y_cpu.data(), dy.data(), dx_cpu.data(), n);

    DeviceBuffer<float> x_device(x), dy_device(dy);
    DeviceBuffer<float> y_device(std::vector<float>(x.size(), -7.f));
    kernels::activation_forward(cuda_context(), f, x_device.data(), y_device.data(), n);
    check_twins_agree(y_device.download(), y_cpu, x, what + " forward");

    // The backward reads the CPU's y, so only its own arithmetic is compared.
    DeviceBuffer<float> y_cpu_device(y_cpu);
    DeviceBuffer<float> dx_device(std::vector<float>(x.size(), -7.f));
    kernels::activation_backward(cuda_context(), f, x_device.data(), y_cpu_device.data(),
                                 dy_device.data(), dx_device.data(), n);
    check_twins_agree(dx_device.download(), dx_cpu, x, what + " backward");

    // In place (x and y alias; dx and dy alias), as the header allows.
    kernels::activation_forward(cuda_context(), f, x_device.data(), x_device.data(), n);
    check_twins_agree(x_device.download(), y_cpu, x, what + " forward in place");
    x_device.upload(x);
    kernels::activation_backward(cuda_context(), f, x_device.data(), y_cpu_device.data(),
                                 dy_device.data(), dy_device.data(), n);
    check_twins_agree(dy_device.download(), dx_cpu, x, what + " backward in place");
  }
}

}  // namespace drgrad::gpu_test
