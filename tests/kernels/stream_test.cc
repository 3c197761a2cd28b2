// The calling thread's current stream (per device, per thread, restored by the guard) and the
// CPU side of Stream and HostReadback, which the trainer's step uses on every device.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/core/stream.h"

namespace drgrad::kernels {
namespace {

// A made-up stream handle: current_stream only stores and returns it, never dereferences it.
void* fake_stream(std::uintptr_t value) {
  return reinterpret_cast<void*>(value);
}

TEST_CASE("current stream is per device, per thread and restored by the guard", "[stream]") {
  const Device first = Device::cuda(0), third = Device::cuda(2);
  CHECK(current_stream(first) == nullptr);
  CHECK(current_stream(third) == nullptr);
  {
    CurrentStreamGuard outer(third, fake_stream(0x30));
    CHECK(current_stream(third) == fake_stream(0x30));
    CHECK(current_stream(first) == nullptr);
    CHECK(current_stream(Device::cuda(7)) == nullptr);
    {
      CurrentStreamGuard inner(third, fake_stream(0x40));
      CHECK(current_stream(third) == fake_stream(0x40));
      void* seen_by_other_thread = fake_stream(1);
      std::thread other([&] { seen_by_other_thread = current_stream(third); });
      other.join();
      CHECK(seen_by_other_thread == nullptr);
    }
    CHECK(current_stream(third) == fake_stream(0x30));
  }
  CHECK(current_stream(third) == nullptr);
}

TEST_CASE("the CPU has no streams", "[stream]") {
  set_current_stream(Device::cpu(), fake_stream(0x50));
  CHECK(current_stream(Device::cpu()) == nullptr);
  Stream stream(Device::cpu());
  CHECK(stream.get() == nullptr);
  synchronize_stream(Device::cpu(), nullptr);  // nothing to wait for; must not throw
  CHECK_THROWS_AS(set_current_stream(Device::cuda(-1), nullptr), std::invalid_argument);
}

TEST_CASE("host readback on the CPU copies at once and is ready", "[stream]") {
  HostReadback readback(Device::cpu(), 4 * sizeof(double));
  CHECK(!readback.pending());
  const std::vector<double> first{1.5, -2.0, 3.25, 0.0};
  readback.start(first.data(), first.size() * sizeof(double));
  CHECK(readback.ready());
  const auto* landed = static_cast<const double*>(readback.wait());
  CHECK(std::vector<double>(landed, landed + 4) == first);
  CHECK(!readback.pending());
  // A later, shorter copy overwrites only its own bytes.
  const double second = 9.0;
  readback.start(&second, sizeof(double));
  landed = static_cast<const double*>(readback.wait());
  CHECK(landed[0] == 9.0);
  CHECK(landed[1] == -2.0);
  CHECK_THROWS_AS(readback.start(first.data(), 5 * sizeof(double)), std::invalid_argument);
}

}  // namespace
}  // namespace drgrad::kernels
