// The per-element arithmetic of the task Gram matrix, shared by the CPU and CUDA twins of
// task_gradient_gram.h and gradient_surgery.h so that both accumulate the same terms in the same
// precision: the K values of one gradient position make K (K + 1) / 2 products, added in double.
#pragma once

#if defined(__CUDACC__)
#define DRGRAD_GRAM_HOST_DEVICE __host__ __device__
#else
#define DRGRAD_GRAM_HOST_DEVICE
#endif

namespace drgrad::kernels::task_gram {

// Entries of the upper triangle (i <= j) of a K x K Gram matrix.
DRGRAD_GRAM_HOST_DEVICE constexpr int pair_count(int tasks) {
  return tasks * (tasks + 1) / 2;
}

// The (row, column) of upper-triangle entry `pair`, in the order (0,0), (0,1), ..., (0,K-1),
// (1,1), ..., (K-1,K-1).
DRGRAD_GRAM_HOST_DEVICE inline void pair_position(int pair, int tasks, int& row, int& column) {
  row = 0;
  while (pair >= tasks - row) {
    pair -= tasks - row;
    ++row;
  }
  column = row + pair;
}

// pairs[p] += values[i] * values[j] (in double) for every pair p = (i, j), i <= j, of the K values
// of one gradient position (values[k] is task k's value, `stride` apart).
template <typename T>
DRGRAD_GRAM_HOST_DEVICE inline void add_position_products(const T* values, long long stride,
                                                          int tasks, double* pairs) {
  int p = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < tasks; ++i) {
    const double value_i = static_cast<double>(values[i * stride]);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = i; j < tasks; ++j) pairs[p++] += value_i * static_cast<double>(values[j * stride]);
  }
}

// Adds (kAdd) or writes (overwrite) the upper-triangle sums into both halves of the row-major
// K x K matrix gram.
DRGRAD_GRAM_HOST_DEVICE inline void store_pair(double total, int pair, int tasks, bool overwrite,
                                               double* gram) {
  int row = 0, column = 0;
  pair_position(pair, tasks, row, column);
  if (overwrite) {
    gram[row * tasks + column] = total;
    gram[column * tasks + row] = total;
  } else {
    gram[row * tasks + column] += total;
    if (row != column) gram[column * tasks + row] += total;
  }
}

}  // namespace drgrad::kernels::task_gram
