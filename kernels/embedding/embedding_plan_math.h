// Index arithmetic of the embedding backward, shared by the CPU twins and the CUDA kernels
// (inline __host__ __device__), so that the CPU tests run the very expressions the GPU runs.
#pragma once

#include <cstdint>

#include "kernels/embedding/embedding_bag.h"

#ifndef DRGRAD_HOST_DEVICE
#if defined(__CUDACC__)
#define DRGRAD_HOST_DEVICE __host__ __device__
#else
#define DRGRAD_HOST_DEVICE
#endif
#endif

namespace drgrad::kernels::embedding_math {

// The segment that holds `index`, given segment_offsets[0 .. num_segments] ascending (segments
// may be empty, offsets then repeat) with segment_offsets[0] <= index < segment_offsets[
// num_segments]: the largest s in [0, num_segments) with segment_offsets[s] <= index. Used for
// the sample of an id position (segments = bags) and the distinct row of a sorted occurrence
// (segments = occurrence lists). O(log num_segments), no branches on data beyond the search.
DRGRAD_HOST_DEVICE inline std::int64_t segment_of(const std::int64_t* segment_offsets,
                                                  std::int64_t num_segments, std::int64_t index) {
  std::int64_t low = 0, high = num_segments - 1;
  while (low < high) {
    const std::int64_t middle = low + (high - low + 1) / 2;
    if (segment_offsets[middle] <= index) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

// The factor a bag of `bag_size` ids applies to its upstream gradient: 1 (sum) or 1 / size
// (mean). The same expression as embedding_bag_backward's twins, so that every backward variant
// multiplies by the same bits.
template <typename T>
DRGRAD_HOST_DEVICE inline T bag_gradient_scale(Pooling pooling, std::int64_t bag_size) {
  return pooling == Pooling::kMean ? T(1) / static_cast<T>(bag_size) : T(1);
}

// Number of low bits that hold every row in [0, table_rows): the radix sort looks at no others.
inline int row_key_bits(std::int64_t table_rows) {
  int bits = 1;
  while (bits < 63 && (std::int64_t{1} << bits) < table_rows) ++bits;
  return bits;
}

}  // namespace drgrad::kernels::embedding_math
