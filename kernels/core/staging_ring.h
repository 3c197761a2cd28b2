// Bookkeeping of a ring of page-locked staging memory for host-to-device copies: which bytes the
// next copy may use, and which earlier copies must have finished before those bytes are written
// again. Pure host logic without CUDA calls, so that the CPU tests check it; the CUDA allocator
// (memory_cuda.cu) owns the memory and the events.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

namespace drgrad::kernels {

class StagingRingPlan {
 public:
  struct Region {
    std::size_t offset = 0;
    std::size_t bytes = 0;  // rounded up to the alignment
  };

  // A ring of `capacity` bytes handing out regions aligned to `alignment` bytes.
  explicit StagingRingPlan(std::size_t capacity, std::size_t alignment = 256)
      : capacity_(capacity), alignment_(alignment) {
    if (alignment == 0 || capacity < 2 * alignment) {
      throw std::invalid_argument("StagingRingPlan: capacity " + std::to_string(capacity) +
                                  " must hold at least two regions of " +
                                  std::to_string(alignment) + " bytes");
    }
  }

  // Copies of at most half the ring go through it; larger ones are better made directly.
  bool fits(std::size_t bytes) const { return bytes > 0 && rounded(bytes) <= capacity_ / 2; }

  // The next region for a copy of `bytes` (fits(bytes) must hold): right after the previous one,
  // or at the start when it would run past the end. Appends to *must_finish the tickets of the
  // copies in flight whose regions it overlaps (the caller waits for them before writing) and
  // forgets them.
  Region reserve(std::size_t bytes, std::vector<std::uint64_t>* must_finish) {
    if (!fits(bytes)) {
      throw std::invalid_argument("StagingRingPlan::reserve: " + std::to_string(bytes) +
                                  " bytes do not fit a ring of " + std::to_string(capacity_));
    }
    Region region{head_, rounded(bytes)};
    if (region.offset + region.bytes > capacity_) region.offset = 0;
    const std::size_t end = region.offset + region.bytes;
    for (auto flight = flights_.begin(); flight != flights_.end();) {
      if (flight->offset < end && region.offset < flight->offset + flight->bytes) {
        must_finish->push_back(flight->ticket);
        flight = flights_.erase(flight);
      } else {
        ++flight;
      }
    }
    head_ = end;
    return region;
  }

  // Records that a copy out of `region` is in flight until the caller's `ticket` says it is done.
  void in_flight(const Region& region, std::uint64_t ticket) {
    flights_.push_back({region.offset, region.bytes, ticket});
  }

  std::size_t flights() const { return flights_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  struct Flight {
    std::size_t offset, bytes;
    std::uint64_t ticket;
  };
  std::size_t rounded(std::size_t bytes) const {
    return (bytes + alignment_ - 1) / alignment_ * alignment_;
  }
  std::size_t capacity_, alignment_;
  std::size_t head_ = 0;
  std::deque<Flight> flights_;
};

}  // namespace drgrad::kernels
