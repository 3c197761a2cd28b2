// DRGrad's router as fused passes over the towers' flattened gradients, with everything between
// them kept in device memory (no host round trip):
//   (a) router_products: one pass over every routed parameter of the towers reduces all the inner
//       products the router needs into the workspace's product array (double, fixed order);
//   (b) router_coefficients: the coefficients from those products (the shared rule of
//       drgrad_router_rule.h), into the workspace's state, and the sign-case counts;
//   (c) router_apply: one pass over every tower parameter computes the routed gradients element by
//       element, applies the optimizer's update to the towers' weights in the same pass (or writes
//       the routed gradients back when no rule is given), and reduces |final g1'|^2 and
//       |final g1''|^2 over the whole towers;
//   (d) router_update_mixing: the updater's step (sigma, mu) in the workspace's state.
// Each has a CPU twin (the reference) and a CUDA twin (float only).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/core/device.h"
#include "kernels/core/device_table.h"
#include "kernels/multitask/drgrad_router_rule.h"
#include "kernels/optimizer/update_rules.h"

namespace drgrad::kernels {

// One routed parameter position: the gradients of that parameter in T1' (own), T1'' (shared) and
// each auxiliary tower (aux[k], k < num_aux; the rest unused), all of length n. offset is the
// number of elements of the positions before it (make_router_product_table fills it in).
template <typename T>
struct RouterProductSegment {
  const T* own = nullptr;
  const T* shared = nullptr;
  const T* aux[kRouterMaxAuxiliaryTowers] = {};
  std::int64_t n = 0;
  std::int64_t offset = 0;
};

// One tower's arrays for one parameter position: weights, gradients and the optimizer's state
// (state_a: velocity, first moment or accumulator; state_b: Adam's second moment; null where the
// rule has none, and all of weights and state may be null when the pass only routes gradients).
template <typename T>
struct RouterTowerArrays {
  T* weights = nullptr;
  T* gradients = nullptr;
  T* state_a = nullptr;
  T* state_b = nullptr;
};

// One parameter position of every tower, routed or not (a position outside the routed set, with
// routed_parameters = first_layer, goes through the pass with the identity routing so that the
// update and the updater's norms cover the whole towers).
template <typename T>
struct RouterApplySegment {
  RouterTowerArrays<T> own;
  RouterTowerArrays<T> shared;
  RouterTowerArrays<T> aux[kRouterMaxAuxiliaryTowers];
  std::int64_t n = 0;
  std::int64_t offset = 0;
  int routed = 0;
};

template <typename T>
using RouterProductTable = DeviceTable<RouterProductSegment<T>>;
template <typename T>
using RouterApplyTable = DeviceTable<RouterApplySegment<T>>;

// Fill in the offsets, check the pointers for num_aux towers (std::invalid_argument naming the
// position and the tower) and mirror the tables on `device`. Build once; rebuild when an array
// moves.
template <typename T>
RouterProductTable<T> make_router_product_table(Device device, int num_aux,
                                                std::vector<RouterProductSegment<T>> segments);
template <typename T>
RouterApplyTable<T> make_router_apply_table(Device device, int num_aux,
                                            std::vector<RouterApplySegment<T>> segments);

// What lives on the device between the passes. Plain data: the host reads a copy of it for
// telemetry and checkpoints (RouterWorkspace::read_state) and restores it on resume.
struct RouterState {
  double products[kRouterMaxProducts] = {};  // indexed as in drgrad_router_rule.h
  RouterCoefficientValues coefficients;      // of the last step
  double final_own_norm2 = 0;                // |g1' + gR1'|^2 over the whole tower T1'
  double final_shared_norm2 = 0;             // |g1'' + gR1''|^2 over the whole tower T1''
  double sigma_own = 0, sigma_shared = 0;    // the updater's running sums
  double mu_own = 0.5, mu_shared = 0.5;      // the mixing weights for the next forward pass
  std::int64_t case_counts[4] = {};          // cumulative sign cases, all pairs
};

// The router's device memory: the state and the scratch for the passes' per-block partial sums
// (CUDA only). Move-only; released with the workspace.
class RouterWorkspace {
 public:
  explicit RouterWorkspace(Device device = Device::cpu());
  RouterWorkspace(const RouterWorkspace&) = delete;
  RouterWorkspace& operator=(const RouterWorkspace&) = delete;
  RouterWorkspace(RouterWorkspace&& other) noexcept;
  RouterWorkspace& operator=(RouterWorkspace&& other) noexcept;
  ~RouterWorkspace();

  Device device() const { return device_; }
  RouterState* state() { return state_; }   // in device memory
  double* partials() { return partials_; }  // CUDA: kRouterBlocks * kRouterMaxProducts doubles
  // Synchronous copies between the state and the host (a checkpoint, telemetry, a resume).
  RouterState read_state() const;
  void write_state(const RouterState& state);
  // The two mixing weights only (16 bytes), for a forward pass that takes them from the host.
  void read_mixing(double* mu_own, double* mu_shared) const;

 private:
  void swap(RouterWorkspace& other) noexcept;
  Device device_;
  RouterState* state_ = nullptr;
  double* partials_ = nullptr;
};

// Every CUDA reduction of the router runs this many blocks of 256 threads, whatever the size or
// the device, so the grouping of terms (and the bits of the result) never changes.
inline constexpr int kRouterBlocks = 1024;

// (a) state.products[0 .. router_product_count(num_aux)) = the inner products over all segments.
// CPU: each product summed in double per segment in element order, segments added in order (the
// bits of per-parameter kernels::dot calls added up). CUDA: per-thread sums in double, a fixed
// block tree, then one block adding the kRouterBlocks partials in a fixed tree.
template <typename T>
void router_products(const Context& ctx, const RouterProductTable<T>& table, int num_aux,
                     RouterWorkspace& workspace);

// (b) state.coefficients from state.products, and case_counts[sign case of each pair] += 1.
// Checks the rule first (num_aux in 1 .. kRouterMaxAuxiliaryTowers, gamma > 0). skip as for
// router_apply: non-zero leaves the coefficients and case counts as they were.
void router_coefficients(const Context& ctx, const RouterRule& rule, RouterWorkspace& workspace,
                         const std::int64_t* skip = nullptr);

// (c) For every element of every segment, from the unmodified gradients and state.coefficients:
//   routed positions:  g1'  += c.own_from_shared g1'' + sum_k c.own_from_aux[k] g_k
//                      g1'' += c.shared_from_shared g1''
//                      g_k  += c.aux_from_own[k] g1'   (the g1' before its own update)
//   (each term only when its coefficient is non-zero, in that order, in T: the bits of the
//   kernels::axpy sequence it replaces); other positions keep their gradients. Then, with
//   `update` non-null, every tower's weights and state step under *update with the final
//   gradient; with write_gradients the final gradients are stored in the gradient arrays.
//   state.final_own_norm2 / final_shared_norm2 = |final g1'|^2, |final g1''|^2 over all segments
//   (CPU: per segment in element order, segments added in order; CUDA: fixed-shape trees as in
//   router_products).
// skip: null, or a count or flag in device memory; non-zero means write nothing (see
// fused_dense_update): neither weights, state, gradients nor the final norms.
template <typename T>
void router_apply(const Context& ctx, const RouterApplyTable<T>& table, int num_aux,
                  const UpdateRule* update, bool write_gradients, RouterWorkspace& workspace,
                  const std::int64_t* skip = nullptr);

// (d) sigma <- rho sigma + sqrt(final norm2) for T1' and T1''; mu = softmax(sigma). skip as for
// router_apply: non-zero leaves sigma and mu as they were (a refused step teaches the updater
// nothing).
void router_update_mixing(const Context& ctx, double rho, RouterWorkspace& workspace,
                          const std::int64_t* skip = nullptr);

namespace cpu {
template <typename T>
void router_products(const RouterProductSegment<T>* segments, std::int64_t num_segments,
                     int num_aux, RouterState* state);
void router_coefficients(const RouterRule& rule, RouterState* state, const std::int64_t* skip);
template <typename T>
void router_apply(const RouterApplySegment<T>* segments, std::int64_t num_segments, int num_aux,
                  const UpdateRule* update, bool write_gradients, RouterState* state,
                  const std::int64_t* skip);
void router_update_mixing(double rho, RouterState* state, const std::int64_t* skip);
}  // namespace cpu

namespace cuda {
void router_products(const Context& ctx, const RouterProductSegment<float>* segments,
                     std::int64_t num_segments, std::int64_t total_elements, int num_aux,
                     RouterState* state, double* partials);
void router_coefficients(const Context& ctx, const RouterRule& rule, RouterState* state,
                         const std::int64_t* skip);
void router_apply(const Context& ctx, const RouterApplySegment<float>* segments,
                  std::int64_t num_segments, int num_aux, const UpdateRule* update,
                  bool write_gradients, RouterState* state, double* partials,
                  const std::int64_t* skip);
void router_update_mixing(const Context& ctx, double rho, RouterState* state,
                          const std::int64_t* skip);
}  // namespace cuda

}  // namespace drgrad::kernels
