// Embedding bag: for each sample, gather the rows of a table named by its ids and pool them (sum
// or mean). The backward pass produces one gradient row per distinct touched row, without atomics:
// the caller supplies, for each distinct row, the list of (sample) occurrences, so every output
// row is reduced by one thread in a fixed order (deterministic on every device).
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

enum class Pooling { kSum, kMean };

// rows[offsets[b] .. offsets[b + 1]) are the table rows of sample b (already range-checked or
// hashed by the caller). out[b * out_stride + j] = pool_j(table[rows[i] * dim + j]); an empty bag
// gives zeros. out_stride >= dim lets several slots write side by side into one matrix.
template <typename T>
void embedding_bag_forward(const Context& ctx, const T* table, std::int64_t dim,
                           const std::int64_t* rows, const std::int64_t* offsets,
                           std::int64_t batch, Pooling pooling, T* out, std::int64_t out_stride);

// Gradient of the table rows touched by a batch, written compactly:
// row_gradients[u * dim + j] = sum over occurrences o of unique row u of
//   d_out[occurrence_samples[o] * out_stride + j] * scale(sample),
// with scale = 1 (sum) or 1 / bag size (mean). occurrence_offsets has num_unique + 1 entries.
template <typename T>
void embedding_bag_backward(const Context& ctx, const T* d_out, std::int64_t out_stride,
                            std::int64_t dim, const std::int64_t* offsets, Pooling pooling,
                            const std::int64_t* occurrence_offsets,
                            const std::int64_t* occurrence_samples, std::int64_t num_unique,
                            T* row_gradients);

namespace cpu {
template <typename T>
void embedding_bag_forward(const T* table, std::int64_t dim, const std::int64_t* rows,
                           const std::int64_t* offsets, std::int64_t batch, Pooling pooling, T* out,
                           std::int64_t out_stride);
template <typename T>
void embedding_bag_backward(const T* d_out, std::int64_t out_stride, std::int64_t dim,
                            const std::int64_t* offsets, Pooling pooling,
                            const std::int64_t* occurrence_offsets,
                            const std::int64_t* occurrence_samples, std::int64_t num_unique,
                            T* row_gradients);
}  // namespace cpu

namespace cuda {
void embedding_bag_forward(const Context& ctx, const float* table, std::int64_t dim,
                           const std::int64_t* rows, const std::int64_t* offsets,
                           std::int64_t batch, Pooling pooling, float* out,
                           std::int64_t out_stride);
void embedding_bag_backward(const Context& ctx, const float* d_out, std::int64_t out_stride,
                            std::int64_t dim, const std::int64_t* offsets, Pooling pooling,
                            const std::int64_t* occurrence_offsets,
                            const std::int64_t* occurrence_samples, std::int64_t num_unique,
                            float* row_gradients);
}  // namespace cuda

}  // namespace drgrad::kernels
