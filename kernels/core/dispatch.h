// The one place an op picks its implementation: CPU twin, or CUDA twin for float data on a CUDA
// device. Used only inside kernels/*.cc dispatch functions.
#pragma once

#include <string>
#include <type_traits>

#include "kernels/core/device.h"

namespace drgrad::kernels {

[[noreturn]] inline void throw_double_on_cuda(const char* op) {
  throw NotSupportedError(std::string(op) +
                          ": double precision runs on the CPU only; use float on CUDA devices");
}

}  // namespace drgrad::kernels

// DRGRAD_DISPATCH(T, ctx, op, args...): calls cuda::op(ctx, args...) for float on a CUDA device,
// otherwise cpu::op(args...) (the CPU twin needs no context).
#define DRGRAD_DISPATCH(T, ctx, op, ...)                \
  do {                                                  \
    if ((ctx).device.is_cuda()) {                       \
      if constexpr (std::is_same_v<T, float>) {         \
        DRGRAD_CUDA_TWIN(cuda::op((ctx), __VA_ARGS__)); \
        return;                                         \
      } else {                                          \
        ::drgrad::kernels::throw_double_on_cuda(#op);   \
      }                                                 \
    }                                                   \
    cpu::op(__VA_ARGS__);                               \
  } while (0)
