// The staging ring's bookkeeping (kernels/core/staging_ring.h): regions in ring order, the wrap
// to the start, and exactly the earlier copies whose bytes a new region overwrites to wait for.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/core/staging_ring.h"

namespace drgrad::kernels {
namespace {

TEST_CASE("staging ring hands out aligned regions in order and wraps", "[staging]") {
  StagingRingPlan plan(4096, 256);
  CHECK(plan.fits(1));
  CHECK(plan.fits(2048));
  CHECK_FALSE(plan.fits(2049));  // more than half the ring: copied directly
  CHECK_FALSE(plan.fits(0));
  std::vector<std::uint64_t> wait;
  const auto first = plan.reserve(100, &wait);
  CHECK(first.offset == 0);
  CHECK(first.bytes == 256);
  plan.in_flight(first, 1);
  const auto second = plan.reserve(1000, &wait);
  CHECK(second.offset == 256);
  CHECK(second.bytes == 1024);
  plan.in_flight(second, 2);
  const auto third = plan.reserve(2048, &wait);
  CHECK(third.offset == 1280);
  plan.in_flight(third, 3);
  CHECK(wait.empty());
  // 1280 + 2048 = 3328: another 1024 would run past 4096, so it starts over and overwrites the
  // first two copies' bytes, not the third's.
  const auto fourth = plan.reserve(1024, &wait);
  CHECK(fourth.offset == 0);
  CHECK(wait == std::vector<std::uint64_t>{1, 2});
  plan.in_flight(fourth, 4);
  CHECK(plan.flights() == 2);
  wait.clear();
  const auto fifth = plan.reserve(512, &wait);
  CHECK(fifth.offset == 1024);
  CHECK(wait == std::vector<std::uint64_t>{3});
  CHECK_THROWS_AS(plan.reserve(4096, &wait), std::invalid_argument);
  CHECK_THROWS_AS(StagingRingPlan(256, 256), std::invalid_argument);
}

TEST_CASE("staging ring never hands out bytes of a copy still in flight", "[staging]") {
  // Random copy sizes against a byte map of which ticket owns each byte: every byte a new region
  // takes must belong to a ticket the plan asked to wait for, or to nobody.
  std::mt19937 random(Catch::rngSeed());
  std::uniform_int_distribution<std::size_t> size(1, 3000);
  const std::size_t capacity = 8192;
  StagingRingPlan plan(capacity, 64);
  std::vector<std::uint64_t> owner(capacity, 0);  // 0: free or finished
  for (std::uint64_t ticket = 1; ticket <= 2000; ++ticket) {
    const std::size_t bytes = size(random);
    std::vector<std::uint64_t> wait;
    const auto region = plan.reserve(bytes, &wait);
    REQUIRE(region.offset + region.bytes <= capacity);
    REQUIRE(region.bytes >= bytes);
    for (const std::uint64_t finished : wait) {
      for (auto& byte_owner : owner) {
        if (byte_owner == finished) byte_owner = 0;
      }
    }
    for (std::size_t b = region.offset; b < region.offset + region.bytes; ++b) {
      if (owner[b] != 0) FAIL("byte " << b << " still in flight under ticket " << owner[b]);
      owner[b] = ticket;
    }
    plan.in_flight(region, ticket);
  }
}

}  // namespace
}  // namespace drgrad::kernels
