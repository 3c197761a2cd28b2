// The messages of failed device allocations (format_out_of_memory, format_bytes): built from
// plain numbers, so they are checked here although no test can exhaust a GPU's memory.
#include <catch2/catch.hpp>

#include <string>

#include "kernels/core/memory.h"

using drgrad::kernels::Device;
using drgrad::kernels::format_bytes;
using drgrad::kernels::format_out_of_memory;

namespace {
constexpr std::size_t kMiB = std::size_t(1) << 20;
constexpr std::size_t kGiB = std::size_t(1) << 30;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
}  // namespace

TEST_CASE("format_bytes uses binary units with two decimals", "[memory]") {
  CHECK(format_bytes(0) == "0 bytes");
  CHECK(format_bytes(1023) == "1023 bytes");
  CHECK(format_bytes(1024) == "1.00 KiB");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(3 * kMiB + kMiB / 4) == "3.25 MiB");
  CHECK(format_bytes(141 * kGiB) == "141.00 GiB");
  CHECK(format_bytes(std::size_t(2048) * kGiB) == "2.00 TiB");
}

TEST_CASE("out-of-memory message names the request, the free and total memory and a remedy",
          "[memory]") {
  const std::string message =
      format_out_of_memory(Device::cuda(1), "cudaMalloc", 3 * kGiB, 2 * kGiB, 140 * kGiB);
  INFO(message);
  CHECK(contains(message, "cuda:1"));
  CHECK(contains(message, "cudaMalloc asked for 3.00 GiB (3221225472 bytes)"));
  CHECK(contains(message, "2.00 GiB of 140.00 GiB was free (1.4%)"));
  CHECK(contains(message, "Lower training.batch_size"));
  // Little is free: the message points at whoever holds the memory.
  CHECK(contains(message, "nvidia-smi"));
}

TEST_CASE("out-of-memory message without much in use does not blame other processes", "[memory]") {
  const std::string message =
      format_out_of_memory(Device::cuda(0), "cudaMallocAsync", 100 * kGiB, 90 * kGiB, 140 * kGiB);
  INFO(message);
  CHECK(contains(message, "cudaMallocAsync asked for 100.00 GiB"));
  CHECK(contains(message, "90.00 GiB of 140.00 GiB was free (64.3%)"));
  CHECK(contains(message, "Lower training.batch_size"));
  CHECK_FALSE(contains(message, "nvidia-smi"));
}

TEST_CASE("out-of-memory message for a buffer larger than the device says no freeing helps",
          "[memory]") {
  const std::string message =
      format_out_of_memory(Device::cuda(0), "cudaMalloc", 200 * kGiB, 139 * kGiB, 140 * kGiB);
  INFO(message);
  CHECK(contains(message, "asked for 200.00 GiB"));
  CHECK(contains(message, "larger than the whole device"));
  CHECK(contains(message, "training.device = \"cpu\""));
  CHECK_FALSE(contains(message, "Lower training.batch_size"));
}

TEST_CASE("out-of-memory message with unknown request or unknown device memory", "[memory]") {
  const std::string unknown_request = format_out_of_memory(
      Device::cuda(0), "cudaMallocAsync(&p, n, s) at x.cu:7", 0, 512 * kMiB, 140 * kGiB);
  INFO(unknown_request);
  CHECK(contains(unknown_request,
                 "cudaMallocAsync(&p, n, s) at x.cu:7 asked for an unknown "
                 "number of bytes"));
  CHECK(contains(unknown_request, "512.00 MiB of 140.00 GiB was free"));
  CHECK(contains(unknown_request, "Lower training.batch_size"));

  const std::string unknown_memory =
      format_out_of_memory(Device::cuda(2), "cudaMalloc", kMiB, 0, 0);
  INFO(unknown_memory);
  CHECK(contains(unknown_memory, "cuda:2"));
  CHECK(contains(unknown_memory, "asked for 1.00 MiB (1048576 bytes)"));
  CHECK(contains(unknown_memory, "could not be read"));
  CHECK(contains(unknown_memory, "Lower training.batch_size"));
}
