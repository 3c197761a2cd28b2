// The sort keys of the CUDA AUC and the arithmetic that turns sorted keys into 2U, as inline
// functions for host and device, so that the CPU tests can sort the same keys with std::sort and
// check the method against a brute-force pair count.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(DRGRAD_HOST_DEVICE)
#if defined(__CUDACC__)
#define DRGRAD_HOST_DEVICE __host__ __device__
#else
#define DRGRAD_HOST_DEVICE
#endif
#endif

namespace drgrad::kernels::rank_keys {

// A key is the 32 order-preserving bits of the score above one tie-order bit.
inline constexpr int kRankKeyBits = 33;

// Order-preserving unsigned bits of a float that is not NaN: negative floats reversed below the
// positive ones. -0 is turned into +0 first, so the two zeros are one score (as `==` says).
DRGRAD_HOST_DEVICE inline std::uint32_t ordered_score_bits(float score) {
  const float canonical = score == 0.f ? 0.f : score;
#if defined(__CUDA_ARCH__)
  const std::uint32_t bits = __float_as_uint(canonical);
#else
  std::uint32_t bits;
  std::memcpy(&bits, &canonical, sizeof(bits));
#endif
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

// (ordered score bits << 1) | tie bit, a positive's tie bit being positive_tie_bit and a
// negative's the other: positive_tie_bit 1 sorts negatives first among equal scores, 0 positives.
DRGRAD_HOST_DEVICE inline std::uint64_t rank_key(float score, bool positive,
                                                 std::uint32_t positive_tie_bit) {
  const std::uint32_t tie_bit = positive ? positive_tie_bit : 1u - positive_tie_bit;
  return (static_cast<std::uint64_t>(ordered_score_bits(score)) << 1) | tie_bit;
}

// In ascending key order, a positive at position j has j - (positives before it) negatives
// before it, and the positives before the positives add up to 0 + 1 + ... + (P - 1). So the sum
// of the positives' positions, minus P (P - 1) / 2, counts for each positive the negatives below
// its score plus, when negatives sort first, the negatives tied with it. Both orders together:
//   2U = sum over positives of (2 * negatives below + negatives tied).
DRGRAD_HOST_DEVICE inline std::int64_t twice_u_from_position_sums(
    std::int64_t position_sum_negatives_first, std::int64_t position_sum_positives_first,
    std::int64_t positives) {
  return position_sum_negatives_first + position_sum_positives_first - positives * (positives - 1);
}

}  // namespace drgrad::kernels::rank_keys
