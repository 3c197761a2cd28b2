// CUDA twin of the fused DRGrad router passes. Elements of a table are numbered in segment order
// and element x belongs to thread x mod (grid threads), so threads share the towers evenly
// whatever the parameter sizes. Reductions run exactly kRouterBlocks blocks of kBlockSize threads:
// each thread sums its elements in order (double), each block adds its threads in a fixed tree,
// and one block adds the block sums in a fixed tree, so the bits never depend on scheduling or on
// the device. Kernels are instantiated for 1, 2, 4, 8 and 16 auxiliary towers (the smallest that
// holds num_aux) so that the per-thread arrays stay in registers.
//
// Bytes per element for the roofline (fp32 towers, K auxiliary towers, S state arrays per tower:
// 1 for SGD and Adagrad, 2 for Adam):
//   router_products: reads (2 + K) x 4 bytes per routed element, writes nothing per element.
//   router_apply:    reads (2 + K) x 4 (gradients) + (2 + K) x (1 + S) x 4 (weights, state);
//                    writes (2 + K) x (1 + S) x 4, plus (2 + K) x 4 with write_gradients.
//                    Adam, K = 1: 12 + 36 read + 36 written = 84 bytes per tower position.
// The unfused path it replaces read the routed gradients once per product (3 + 3K passes), wrote
// them back, read them again for the norms and once more in the optimizer.
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/multitask/drgrad_router.h"

namespace drgrad::kernels::cuda {
namespace {

// The first element of a segment at `offset` that belongs to `thread` out of `threads`.
__device__ std::int64_t first_element(std::int64_t thread, std::int64_t threads,
                                      std::int64_t offset) {
  return (thread - offset % threads + threads) % threads;
}

// Pass (a), first stage: per-block sums of every product into partials[p * kRouterBlocks + b].
template <int Capacity>
__global__ void router_products_kernel(const RouterProductSegment<float>* __restrict__ segments,
                                       std::int64_t num_segments, int num_aux, double* partials) {
  constexpr int kCapacityProducts = 4 + 3 * Capacity;
  double sums[kCapacityProducts];
#pragma unroll
  for (int p = 0; p < kCapacityProducts; ++p) sums[p] = 0.0;
  const std::int64_t threads = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t thread = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RouterProductSegment<float>& segment = segments[s];
    for (std::int64_t i = first_element(thread, threads, segment.offset); i < segment.n;
         i += threads) {
      const double own = segment.own[i];
      const double shared = segment.shared[i];
      sums[kProductOwnNorm2] += own * own;
      sums[kProductSharedNorm2] += shared * shared;
      sums[kProductOwnDotShared] += own * shared;
      sums[kProductOwnSum] += own;
#pragma unroll
      for (int k = 0; k < Capacity; ++k) {
        if (k < num_aux) {
          const double aux = segment.aux[k][i];
          sums[product_aux_norm2(k)] += aux * aux;
          sums[product_own_dot_aux(k)] += own * aux;
          sums[product_aux_sum(k)] += aux;
        }
      }
    }
  }
  const int count = router_product_count(num_aux);
#pragma unroll
  for (int p = 0; p < kCapacityProducts; ++p) {
    if (p < count) {  // uniform over the block: every thread calls block_sum or none does
      const double total = block_sum(sums[p]);
      if (threadIdx.x == 0) partials[p * kRouterBlocks + blockIdx.x] = total;
    }
  }
}

// Pass (a), second stage (one block): state->products[p] = the sum of the block sums.
__global__ void router_products_total_kernel(const double* partials, int count,
                                             RouterState* state) {
  for (int p = 0; p < kRouterMaxProducts; ++p) {
    double local = 0.0;
    if (p < count) {
      for (int b = threadIdx.x; b < kRouterBlocks; b += blockDim.x) {
        local += partials[p * kRouterBlocks + b];
      }
    }
    const double total = block_sum(local);
    if (threadIdx.x == 0) state->products[p] = total;
  }
}

// Pass (b): one thread, the shared rule.
__global__ void router_coefficients_kernel(RouterRule rule, RouterState* state,
                                           const std::int64_t* skip) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  if (skip != nullptr && *skip != 0) return;
  compute_router_coefficient_values(state->products, rule, &state->coefficients);
  for (int k = 0; k < rule.num_aux; ++k) ++state->case_counts[state->coefficients.sign_case[k]];
}

__device__ void finish_tower(const RouterTowerArrays<float>& tower, std::int64_t i, float gradient,
                             const UpdateRule& rule, bool has_update, bool write_gradients) {
  if (write_gradients) tower.gradients[i] = gradient;
  if (has_update) {
    apply_update_rule(rule, tower.weights[i], gradient,
                      tower.state_a == nullptr ? nullptr : tower.state_a + i,
                      tower.state_b == nullptr ? nullptr : tower.state_b + i);
  }
}

// Pass (c): route, update, and per-block sums of the final norms into partials[0 / 1 *
// kRouterBlocks + b]. Each block copies the coefficients from device memory into shared memory
// once (with an all-zero set, the identity routing, beside them); the update rule arrives by
// value (has_update says whether there is one).
template <int Capacity>
__global__ void router_apply_kernel(const RouterApplySegment<float>* __restrict__ segments,
                                    std::int64_t num_segments, int num_aux, UpdateRule rule,
                                    bool has_update, bool write_gradients, const RouterState* state,
                                    double* partials, const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;  // uniform over the grid: no block_sum is half-called
  // Raw storage: a __shared__ variable cannot have a constructor.
  __shared__ alignas(
      RouterCoefficientValues) unsigned char storage[2 * sizeof(RouterCoefficientValues)];
  auto* routings = reinterpret_cast<RouterCoefficientValues*>(storage);
  if (threadIdx.x == 0) {
    memcpy(&routings[0], &state->coefficients, sizeof(RouterCoefficientValues));
    memset(&routings[1], 0, sizeof(RouterCoefficientValues));  // zero coefficients: identity
  }
  __syncthreads();
  const std::int64_t threads = std::int64_t(gridDim.x) * blockDim.x;
  const std::int64_t thread = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  double own_norm2 = 0.0, shared_norm2 = 0.0;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RouterApplySegment<float>& segment = segments[s];
    const RouterCoefficientValues& routing = routings[segment.routed ? 0 : 1];
    for (std::int64_t i = first_element(thread, threads, segment.offset); i < segment.n;
         i += threads) {
      float g_aux[Capacity], aux[Capacity];
#pragma unroll
      for (int k = 0; k < Capacity; ++k) g_aux[k] = k < num_aux ? segment.aux[k].gradients[i] : 0.f;
      float own, shared;
      route_gradient_element<float, Capacity>(routing, num_aux, segment.own.gradients[i],
                                              segment.shared.gradients[i], g_aux, &own, &shared,
                                              aux);
      own_norm2 += static_cast<double>(own) * own;
      shared_norm2 += static_cast<double>(shared) * shared;
      finish_tower(segment.own, i, own, rule, has_update, write_gradients);
      finish_tower(segment.shared, i, shared, rule, has_update, write_gradients);
#pragma unroll
      for (int k = 0; k < Capacity; ++k) {
        if (k < num_aux) {
          finish_tower(segment.aux[k], i, aux[k], rule, has_update, write_gradients);
        }
      }
    }
  }
  const double own_total = block_sum(own_norm2);
  if (threadIdx.x == 0) partials[blockIdx.x] = own_total;
  const double shared_total = block_sum(shared_norm2);
  if (threadIdx.x == 0) partials[kRouterBlocks + blockIdx.x] = shared_total;
}

// Pass (c), second stage (one block): the final norms into the state.
__global__ void router_norms_total_kernel(const double* partials, RouterState* state,
                                          const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  for (int which = 0; which < 2; ++which) {
    double local = 0.0;
    for (int b = threadIdx.x; b < kRouterBlocks; b += blockDim.x) {
      local += partials[which * kRouterBlocks + b];
    }
    const double total = block_sum(local);
    if (threadIdx.x == 0) {
      if (which == 0) {
        state->final_own_norm2 = total;
      } else {
        state->final_shared_norm2 = total;
      }
    }
  }
}

// Pass (d): one thread, the shared updater arithmetic.
__global__ void router_update_mixing_kernel(double rho, RouterState* state,
                                            const std::int64_t* skip) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  if (skip != nullptr && *skip != 0) return;
  mixing_accumulate(rho, sqrt(state->final_own_norm2), sqrt(state->final_shared_norm2),
                    &state->sigma_own, &state->sigma_shared);
  mixing_softmax(state->sigma_own, state->sigma_shared, &state->mu_own, &state->mu_shared);
}

// Calls launch(std::integral_constant<int, Capacity>{}) with the smallest capacity holding num_aux.
template <typename Launch>
void with_aux_capacity(int num_aux, Launch&& launch) {
  if (num_aux <= 1) {
    launch(std::integral_constant<int, 1>{});
  } else if (num_aux <= 2) {
    launch(std::integral_constant<int, 2>{});
  } else if (num_aux <= 4) {
    launch(std::integral_constant<int, 4>{});
  } else if (num_aux <= 8) {
    launch(std::integral_constant<int, 8>{});
  } else {
    launch(std::integral_constant<int, kRouterMaxAuxiliaryTowers>{});
  }
}

}  // namespace

void router_products(const Context& ctx, const RouterProductSegment<float>* segments,
                     std::int64_t num_segments, std::int64_t total_elements, int num_aux,
                     RouterState* state, double* partials) {
  const cudaStream_t stream = stream_of(ctx);
  // With no routed element the kernels still run: they write zero products.
  static_cast<void>(total_elements);
  with_aux_capacity(num_aux, [&](auto capacity) {
    constexpr int kCapacity = decltype(capacity)::value;
    router_products_kernel<kCapacity>
        <<<kRouterBlocks, kBlockSize, 0, stream>>>(segments, num_segments, num_aux, partials);
    DRGRAD_CUDA_CHECK_LAUNCH(router_products_kernel);
  });
  router_products_total_kernel<<<1, kBlockSize, 0, stream>>>(partials,
                                                             router_product_count(num_aux), state);
  DRGRAD_CUDA_CHECK_LAUNCH(router_products_total_kernel);
}

void router_coefficients(const Context& ctx, const RouterRule& rule, RouterState* state,
                         const std::int64_t* skip) {
  router_coefficients_kernel<<<1, 1, 0, stream_of(ctx)>>>(rule, state, skip);
  DRGRAD_CUDA_CHECK_LAUNCH(router_coefficients_kernel);
}

void router_apply(const Context& ctx, const RouterApplySegment<float>* segments,
                  std::int64_t num_segments, int num_aux, const UpdateRule* update,
                  bool write_gradients, RouterState* state, double* partials,
                  const std::int64_t* skip) {
  const cudaStream_t stream = stream_of(ctx);
  const UpdateRule rule = update != nullptr ? *update : UpdateRule{};
  with_aux_capacity(num_aux, [&](auto capacity) {
    constexpr int kCapacity = decltype(capacity)::value;
    router_apply_kernel<kCapacity><<<kRouterBlocks, kBlockSize, 0, stream>>>(
        segments, num_segments, num_aux, rule, update != nullptr, write_gradients, state, partials,
        skip);
    DRGRAD_CUDA_CHECK_LAUNCH(router_apply_kernel);
  });
  router_norms_total_kernel<<<1, kBlockSize, 0, stream>>>(partials, state, skip);
  DRGRAD_CUDA_CHECK_LAUNCH(router_norms_total_kernel);
}

void router_update_mixing(const Context& ctx, double rho, RouterState* state,
                          const std::int64_t* skip) {
  router_update_mixing_kernel<<<1, 1, 0, stream_of(ctx)>>>(rho, state, skip);
  DRGRAD_CUDA_CHECK_LAUNCH(router_update_mixing_kernel);
}

}  // namespace drgrad::kernels::cuda
