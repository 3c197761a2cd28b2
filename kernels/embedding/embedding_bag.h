// Embedding bag: for each sample, gather the rows of a table named by its ids and pool them (sum
// or mean). The backward pass produces one gradient row per distinct touched row, without atomics:
// the caller supplies, for each distinct row, the list of (sample) occurrences (a host plan, or
// kernels/embedding/embedding_plan.h on the device), so every output row is reduced by one
// thread in a fixed order (deterministic on every device). An atomic variant is opt-in.
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

// The same, with the number of distinct rows in the context's device memory (as
// build_embedding_backward_plan leaves it, kernels/embedding/embedding_plan.h) and capacity, the
// rows row_gradients and occurrence_offsets (capacity + 1 entries) have room for: rows
// u < min(*num_unique_device, capacity) are written with the bits embedding_bag_backward gives,
// the rest are left untouched. On CUDA it launches for the capacity and reads the count on the
// device, so the host never waits for it.
template <typename T>
void embedding_bag_backward_with_device_count(const Context& ctx, const T* d_out,
                                              std::int64_t out_stride, std::int64_t dim,
                                              const std::int64_t* offsets, Pooling pooling,
                                              const std::int64_t* occurrence_offsets,
                                              const std::int64_t* occurrence_samples,
                                              const std::int64_t* num_unique_device,
                                              std::int64_t capacity, T* row_gradients);

// The fast, non-deterministic backward (model.embedding_backward = "fast_nondeterministic"):
// row_gradients [gradient_rows, dim] is zeroed, then every id position p of the batch
// (num_ids = offsets[batch] of them) adds scale(sample) * d_out[sample(p) * out_stride + j] into
// row distinct_index_of_position[p] (from the plan; each index < gradient_rows). On CUDA one
// thread per (position, column) and float atomicAdd: no pass over occurrence lists, so a row
// named by thousands of samples does not serialise one warp, but the order of the additions,
// hence the last bits, may change from run to run. The CPU twin adds in position order, which is
// the deterministic backward's order: on the CPU both give the same bits.
template <typename T>
void embedding_bag_backward_atomic(const Context& ctx, const T* d_out, std::int64_t out_stride,
                                   std::int64_t dim, const std::int64_t* offsets,
                                   std::int64_t batch, Pooling pooling,
                                   const std::int64_t* distinct_index_of_position,
                                   std::int64_t num_ids, std::int64_t gradient_rows,
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
template <typename T>
void embedding_bag_backward_with_device_count(
    const T* d_out, std::int64_t out_stride, std::int64_t dim, const std::int64_t* offsets,
    Pooling pooling, const std::int64_t* occurrence_offsets, const std::int64_t* occurrence_samples,
    const std::int64_t* num_unique_device, std::int64_t capacity, T* row_gradients);
template <typename T>
void embedding_bag_backward_atomic(const T* d_out, std::int64_t out_stride, std::int64_t dim,
                                   const std::int64_t* offsets, std::int64_t batch, Pooling pooling,
                                   const std::int64_t* distinct_index_of_position,
                                   std::int64_t num_ids, std::int64_t gradient_rows,
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
void embedding_bag_backward_with_device_count(const Context& ctx, const float* d_out,
                                              std::int64_t out_stride, std::int64_t dim,
                                              const std::int64_t* offsets, Pooling pooling,
                                              const std::int64_t* occurrence_offsets,
                                              const std::int64_t* occurrence_samples,
                                              const std::int64_t* num_unique_device,
                                              std::int64_t capacity, float* row_gradients);
void embedding_bag_backward_atomic(const Context& ctx, const float* d_out, std::int64_t out_stride,
                                   std::int64_t dim, const std::int64_t* offsets,
                                   std::int64_t batch, Pooling pooling,
                                   const std::int64_t* distinct_index_of_position,
                                   std::int64_t num_ids, std::int64_t gradient_rows,
                                   float* row_gradients);
}  // namespace cuda

}  // namespace drgrad::kernels
