// GPU tests of kernels/core/stream.h and the stream-ordered memory of kernels/core/memory.h: a
// stream made current receives allocations, fills and copies; freed blocks come back from the
// device's pool instead of new device memory; uploads staged through the page-locked ring land
// intact; the page-locked readback lands; an impossible allocation names its size.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/memory.h"
#include "kernels/core/stream.h"
#include "tests/gpu/gpu_test_support.h"

namespace drgrad::gpu_test {

namespace {
std::uint64_t pool_attribute(cudaMemPoolAttr attribute) {
  cudaMemPool_t pool = nullptr;
  DRGRAD_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
  std::uint64_t value = 0;
  DRGRAD_CUDA_CHECK(cudaMemPoolGetAttribute(pool, attribute, &value));
  return value;
}
}  // namespace

TEST_CASE("allocations, fills and copies run on the current stream", "[gpu][stream]") {
  DRGRAD_REQUIRE_GPU();
  const kernels::Device device = kernels::Device::cuda(0);
  kernels::Stream stream(device);
  REQUIRE(stream.get() != nullptr);
  kernels::CurrentStreamGuard guard(device, stream.get());
  CHECK(kernels::current_stream(device) == stream.get());

  const std::size_t n = 1 << 20;  // several pages, so that the copies are real DMA transfers
  std::vector<float> values(n);
  std::iota(values.begin(), values.end(), -1000.f);
  void* first = kernels::allocate(device, n * sizeof(float));
  void* second = kernels::allocate(device, n * sizeof(float));
  kernels::copy_bytes(device, first, kernels::Device::cpu(), values.data(), n * sizeof(float));
  kernels::zero_bytes(device, second, n * sizeof(float));
  kernels::copy_bytes(device, second, device, first, n / 2 * sizeof(float));
  std::vector<float> back(n, -1.f);
  kernels::copy_bytes(kernels::Device::cpu(), back.data(), device, second, n * sizeof(float));
  for (std::size_t i = 0; i < n; ++i) {
    const float expected = i < n / 2 ? values[i] : 0.f;
    if (back[i] != expected) {
      FAIL("element " << i << " is " << back[i] << ", expected " << expected);
    }
  }
  kernels::release(device, first);
  kernels::release(device, second);
  kernels::synchronize_stream(device, stream.get());
  // The pool keeps what was freed (its release threshold was raised on first use).
  CHECK(pool_attribute(cudaMemPoolAttrReleaseThreshold) == UINT64_MAX);
}

TEST_CASE("uploads through the staging ring land intact though the source changes at once",
          "[gpu][stream]") {
  DRGRAD_REQUIRE_GPU();
  const kernels::Device device = kernels::Device::cuda(0);
  kernels::Stream stream(device);
  kernels::CurrentStreamGuard guard(device, stream.get());
  // About 200 MiB in copies of up to 4 MiB (the ring holds 32 MiB, so it comes round several
  // times), and a few larger than half the ring (copied directly), all from one host buffer that
  // is overwritten right after each copy returns.
  std::mt19937 random(20261203);
  std::uniform_int_distribution<std::size_t> small(1, std::size_t(1) << 20);
  std::vector<std::size_t> counts;
  for (int i = 0; i < 200; ++i) counts.push_back(small(random));
  counts.insert(counts.begin() + 50, std::size_t(5) << 20);
  counts.insert(counts.begin() + 120, std::size_t(9) << 20);
  std::vector<std::int32_t> source(std::size_t(9) << 20);
  std::vector<void*> targets;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    for (std::size_t e = 0; e < counts[i]; ++e) source[e] = static_cast<std::int32_t>(i * 7 + e);
    targets.push_back(kernels::allocate(device, counts[i] * sizeof(std::int32_t)));
    kernels::copy_bytes(device, targets.back(), kernels::Device::cpu(), source.data(),
                        counts[i] * sizeof(std::int32_t));
    std::fill(source.begin(), source.begin() + counts[i], -1);  // the copy must not see this
  }
  for (std::size_t i = 0; i < counts.size(); ++i) {
    std::vector<std::int32_t> back(counts[i]);
    kernels::copy_bytes(kernels::Device::cpu(), back.data(), device, targets[i],
                        counts[i] * sizeof(std::int32_t));
    for (std::size_t e = 0; e < counts[i]; ++e) {
      if (back[e] != static_cast<std::int32_t>(i * 7 + e)) {
        FAIL("copy " << i << " element " << e << " is " << back[e]);
      }
    }
    kernels::release(device, targets[i]);
  }
}

TEST_CASE("freed blocks are reused from the pool, not taken from the device again",
          "[gpu][stream]") {
  DRGRAD_REQUIRE_GPU();
  const kernels::Device device = kernels::Device::cuda(0);
  kernels::Stream stream(device);
  kernels::CurrentStreamGuard guard(device, stream.get());
  const std::size_t bytes = std::size_t(64) << 20;
  // One round to reach the steady state, then many: what the pool holds from the device must not
  // grow, as a training step allocates and frees the same sizes every step.
  kernels::release(device, kernels::allocate(device, bytes));
  kernels::synchronize_stream(device, stream.get());
  const std::uint64_t reserved = pool_attribute(cudaMemPoolAttrReservedMemCurrent);
  CHECK(reserved >= bytes);
  for (int round = 0; round < 50; ++round) {
    void* a = kernels::allocate(device, bytes);
    kernels::zero_bytes(device, a, bytes);
    kernels::release(device, a);
  }
  kernels::synchronize_stream(device, stream.get());
  CHECK(pool_attribute(cudaMemPoolAttrReservedMemCurrent) == reserved);
  CHECK(pool_attribute(cudaMemPoolAttrUsedMemCurrent) < bytes);
}

TEST_CASE("host readback lands in page-locked memory after the stream's earlier work",
          "[gpu][stream]") {
  DRGRAD_REQUIRE_GPU();
  const kernels::Device device = kernels::Device::cuda(0);
  kernels::Stream stream(device);
  kernels::CurrentStreamGuard guard(device, stream.get());
  const std::size_t n = 4096;
  kernels::HostReadback readback(device, n * sizeof(std::int64_t));
  void* source = kernels::allocate(device, n * sizeof(std::int64_t));
  for (int round = 0; round < 3; ++round) {
    std::vector<std::int64_t> values(n);
    std::iota(values.begin(), values.end(), std::int64_t(round) * 100000);
    kernels::copy_bytes(device, source, kernels::Device::cpu(), values.data(),
                        n * sizeof(std::int64_t));
    readback.start(source, n * sizeof(std::int64_t));
    CHECK(readback.pending());
    const auto* landed = static_cast<const std::int64_t*>(readback.wait());
    CHECK(!readback.pending());
    CHECK(readback.ready());
    CHECK(std::vector<std::int64_t>(landed, landed + n) == values);
  }
  kernels::release(device, source);
}

TEST_CASE("asking a readback that has not landed leaves no error for the next launch check",
          "[gpu][stream]") {
  DRGRAD_REQUIRE_GPU();
  const kernels::Device device = kernels::Device::cuda(0);
  kernels::Stream stream(device);
  kernels::CurrentStreamGuard guard(device, stream.get());
  // Enough work ahead of the copy (a few GiB of fills) that it has not landed when asked at once.
  const std::size_t bytes = std::size_t(1) << 30;
  void* busy = kernels::allocate(device, bytes);
  kernels::HostReadback readback(device, sizeof(std::int64_t));
  std::int64_t polls_not_ready = 0;
  for (int round = 0; round < 3; ++round) {
    for (int fill = 0; fill < 8; ++fill) kernels::zero_bytes(device, busy, bytes);
    readback.start(busy, sizeof(std::int64_t));
    while (!readback.ready()) {
      ++polls_not_ready;
      // What DRGRAD_CUDA_CHECK_LAUNCH looks at after every kernel launch.
      REQUIRE(cudaPeekAtLastError() == cudaSuccess);
    }
    CHECK(*static_cast<const std::int64_t*>(readback.wait()) == 0);
  }
  INFO("not ready " << polls_not_ready << " times");
  CHECK(polls_not_ready > 0);  // the check above ran at least once
  CHECK(cudaPeekAtLastError() == cudaSuccess);
  kernels::release(device, busy);
}

TEST_CASE("a stream-ordered allocation larger than the device names its size", "[gpu][stream]") {
  DRGRAD_REQUIRE_GPU();
  const kernels::Device device = kernels::Device::cuda(0);
  const std::size_t too_many = std::size_t(1) << 50;  // 1 PiB
  try {
    kernels::allocate(device, too_many);
    FAIL("an allocation of 1 PiB succeeded");
  } catch (const kernels::cuda::DeviceOutOfMemoryError& error) {
    CHECK(error.requested_bytes() == too_many);
    CHECK(std::string(error.what()).find("cudaMallocAsync asked for 1.00 PiB") !=
          std::string::npos);
  }
  // The failure is not sticky: the device still allocates.
  void* small = kernels::allocate(device, 256);
  CHECK(small != nullptr);
  kernels::release(device, small);
  kernels::synchronize_stream(device, nullptr);
}

}  // namespace drgrad::gpu_test
