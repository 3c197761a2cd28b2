// CPU twin of the embedding bag and the dispatch to CUDA.
#include "kernels/embedding/embedding_bag.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/core/dispatch.h"
#include "kernels/embedding/embedding_plan_math.h"

namespace drgrad::kernels {

namespace cpu {

template <typename T>
void embedding_bag_forward(const T* table, std::int64_t dim, const std::int64_t* rows,
                           const std::int64_t* offsets, std::int64_t batch, Pooling pooling, T* out,
                           std::int64_t out_stride) {
  for (std::int64_t b = 0; b < batch; ++b) {
    T* target = out + b * out_stride;
    for (std::int64_t j = 0; j < dim; ++j) target[j] = T(0);
    const std::int64_t begin = offsets[b], end = offsets[b + 1];
    for (std::int64_t i = begin; i < end; ++i) {
      const T* row = table + rows[i] * dim;
      for (std::int64_t j = 0; j < dim; ++j) target[j] += row[j];
    }
    if (pooling == Pooling::kMean && end > begin) {
      const T scale = T(1) / static_cast<T>(end - begin);
      for (std::int64_t j = 0; j < dim; ++j) target[j] *= scale;
    }
  }
}

template <typename T>
void embedding_bag_backward(const T* d_out, std::int64_t out_stride, std::int64_t dim,
                            const std::int64_t* offsets, Pooling pooling,
                            const std::int64_t* occurrence_offsets,
                            const std::int64_t* occurrence_samples, std::int64_t num_unique,
                            T* row_gradients) {
  for (std::int64_t u = 0; u < num_unique; ++u) {
    T* gradient = row_gradients + u * dim;
    for (std::int64_t j = 0; j < dim; ++j) gradient[j] = T(0);
    for (std::int64_t o = occurrence_offsets[u]; o < occurrence_offsets[u + 1]; ++o) {
      const std::int64_t b = occurrence_samples[o];
      const T scale =
          pooling == Pooling::kMean ? T(1) / static_cast<T>(offsets[b + 1] - offsets[b]) : T(1);
      const T* upstream = d_out + b * out_stride;
      for (std::int64_t j = 0; j < dim; ++j) gradient[j] += scale * upstream[j];
    }
  }
}

template <typename T>
void embedding_bag_backward_with_device_count(
    const T* d_out, std::int64_t out_stride, std::int64_t dim, const std::int64_t* offsets,
    Pooling pooling, const std::int64_t* occurrence_offsets, const std::int64_t* occurrence_samples,
    const std::int64_t* num_unique_device, std::int64_t capacity, T* row_gradients) {
  const std::int64_t num_unique = std::clamp<std::int64_t>(*num_unique_device, 0, capacity);
  embedding_bag_backward(d_out, out_stride, dim, offsets, pooling, occurrence_offsets,
                         occurrence_samples, num_unique, row_gradients);
}

template <typename T>
void embedding_bag_backward_atomic(const T* d_out, std::int64_t out_stride, std::int64_t dim,
                                   const std::int64_t* offsets, std::int64_t batch, Pooling pooling,
                                   const std::int64_t* distinct_index_of_position,
                                   std::int64_t num_ids, std::int64_t gradient_rows,
                                   T* row_gradients) {
  std::fill(row_gradients, row_gradients + gradient_rows * dim, T(0));
  // Positions in increasing order (bag by bag): each row receives its occurrences in the order
  // the deterministic backward adds them. The CUDA kernel finds a position's bag by
  // embedding_math::segment_of instead; both give the same bag.
  for (std::int64_t b = 0; b < batch; ++b) {
    const T scale = embedding_math::bag_gradient_scale<T>(pooling, offsets[b + 1] - offsets[b]);
    const T* upstream = d_out + b * out_stride;
    for (std::int64_t p = offsets[b]; p < offsets[b + 1] && p < num_ids; ++p) {
      T* gradient = row_gradients + distinct_index_of_position[p] * dim;
      for (std::int64_t j = 0; j < dim; ++j) gradient[j] += scale * upstream[j];
    }
  }
}

#define DRGRAD_INSTANTIATE_CPU(T)                                                              \
  template void embedding_bag_forward<T>(const T*, std::int64_t, const std::int64_t*,          \
                                         const std::int64_t*, std::int64_t, Pooling, T*,       \
                                         std::int64_t);                                        \
  template void embedding_bag_backward<T>(const T*, std::int64_t, std::int64_t,                \
                                          const std::int64_t*, Pooling, const std::int64_t*,   \
                                          const std::int64_t*, std::int64_t, T*);              \
  template void embedding_bag_backward_with_device_count<T>(                                   \
      const T*, std::int64_t, std::int64_t, const std::int64_t*, Pooling, const std::int64_t*, \
      const std::int64_t*, const std::int64_t*, std::int64_t, T*);                             \
  template void embedding_bag_backward_atomic<T>(                                              \
      const T*, std::int64_t, std::int64_t, const std::int64_t*, std::int64_t, Pooling,        \
      const std::int64_t*, std::int64_t, std::int64_t, T*);
DRGRAD_INSTANTIATE_CPU(float)
DRGRAD_INSTANTIATE_CPU(double)
#undef DRGRAD_INSTANTIATE_CPU

}  // namespace cpu

template <typename T>
void embedding_bag_forward(const Context& ctx, const T* table, std::int64_t dim,
                           const std::int64_t* rows, const std::int64_t* offsets,
                           std::int64_t batch, Pooling pooling, T* out, std::int64_t out_stride) {
  DRGRAD_DISPATCH(T, ctx, embedding_bag_forward, table, dim, rows, offsets, batch, pooling, out,
                  out_stride);
}

template <typename T>
void embedding_bag_backward(const Context& ctx, const T* d_out, std::int64_t out_stride,
                            std::int64_t dim, const std::int64_t* offsets, Pooling pooling,
                            const std::int64_t* occurrence_offsets,
                            const std::int64_t* occurrence_samples, std::int64_t num_unique,
                            T* row_gradients) {
  DRGRAD_DISPATCH(T, ctx, embedding_bag_backward, d_out, out_stride, dim, offsets, pooling,
                  occurrence_offsets, occurrence_samples, num_unique, row_gradients);
}

template <typename T>
void embedding_bag_backward_with_device_count(const Context& ctx, const T* d_out,
                                              std::int64_t out_stride, std::int64_t dim,
                                              const std::int64_t* offsets, Pooling pooling,
                                              const std::int64_t* occurrence_offsets,
                                              const std::int64_t* occurrence_samples,
                                              const std::int64_t* num_unique_device,
                                              std::int64_t capacity, T* row_gradients) {
  if (num_unique_device == nullptr || capacity < 0) {
    throw std::invalid_argument(
        "embedding_bag_backward_with_device_count: needs the device count and a capacity >= 0 "
        "(got capacity " +
        std::to_string(capacity) + ")");
  }
  DRGRAD_DISPATCH(T, ctx, embedding_bag_backward_with_device_count, d_out, out_stride, dim, offsets,
                  pooling, occurrence_offsets, occurrence_samples, num_unique_device, capacity,
                  row_gradients);
}

template <typename T>
void embedding_bag_backward_atomic(const Context& ctx, const T* d_out, std::int64_t out_stride,
                                   std::int64_t dim, const std::int64_t* offsets,
                                   std::int64_t batch, Pooling pooling,
                                   const std::int64_t* distinct_index_of_position,
                                   std::int64_t num_ids, std::int64_t gradient_rows,
                                   T* row_gradients) {
  if (dim < 0 || batch < 0 || num_ids < 0 || gradient_rows < 0 || out_stride < dim ||
      (num_ids > 0 && batch == 0)) {
    throw std::invalid_argument(
        "embedding_bag_backward_atomic: dim " + std::to_string(dim) + ", batch " +
        std::to_string(batch) + ", num_ids " + std::to_string(num_ids) + ", gradient_rows " +
        std::to_string(gradient_rows) + ", out_stride " + std::to_string(out_stride) +
        ": need non-negative sizes, out_stride >= dim and a batch for any ids");
  }
  DRGRAD_DISPATCH(T, ctx, embedding_bag_backward_atomic, d_out, out_stride, dim, offsets, batch,
                  pooling, distinct_index_of_position, num_ids, gradient_rows, row_gradients);
}

#define DRGRAD_INSTANTIATE(T)                                                                    \
  template void embedding_bag_forward<T>(const Context&, const T*, std::int64_t,                 \
                                         const std::int64_t*, const std::int64_t*, std::int64_t, \
                                         Pooling, T*, std::int64_t);                             \
  template void embedding_bag_backward<T>(const Context&, const T*, std::int64_t, std::int64_t,  \
                                          const std::int64_t*, Pooling, const std::int64_t*,     \
                                          const std::int64_t*, std::int64_t, T*);                \
  template void embedding_bag_backward_with_device_count<T>(                                     \
      const Context&, const T*, std::int64_t, std::int64_t, const std::int64_t*, Pooling,        \
      const std::int64_t*, const std::int64_t*, const std::int64_t*, std::int64_t, T*);          \
  template void embedding_bag_backward_atomic<T>(                                                \
      const Context&, const T*, std::int64_t, std::int64_t, const std::int64_t*, std::int64_t,   \
      Pooling, const std::int64_t*, std::int64_t, std::int64_t, T*);
DRGRAD_INSTANTIATE(float)
DRGRAD_INSTANTIATE(double)
#undef DRGRAD_INSTANTIATE

}  // namespace drgrad::kernels
