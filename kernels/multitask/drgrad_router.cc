// CPU twin of the fused DRGrad router passes, the checks of their tables and rules, the router's
// workspace, and the dispatch between CPU and CUDA.
#include "kernels/multitask/drgrad_router.h"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/core/dispatch.h"
#include "kernels/core/memory.h"
#include "kernels/optimizer/optimizer.h"

namespace drgrad::kernels {
namespace {

void require(bool condition, const char* op, const std::string& what) {
  if (!condition) throw std::invalid_argument(std::string(op) + ": " + what);
}

void check_num_aux(const char* op, int num_aux) {
  if (num_aux < 1 || num_aux > kRouterMaxAuxiliaryTowers) {
    throw NotSupportedError(std::string(op) + ": the router handles 1 to " +
                            std::to_string(kRouterMaxAuxiliaryTowers) + " auxiliary towers, not " +
                            std::to_string(num_aux) +
                            "; use fewer auxiliary tasks with strategy.name = \"drgrad\"");
  }
}

void check_table_device(const char* op, Device table_device, const Context& ctx) {
  require(table_device == ctx.device, op,
          "the segment table lives on " + table_device.to_string() + " but the pass runs on " +
              ctx.device.to_string() + "; build the table for the context's device");
}

void check_workspace(const char* op, const RouterWorkspace& workspace, const Context& ctx) {
  require(workspace.device() == ctx.device, op,
          "the router workspace lives on " + workspace.device().to_string() +
              " but the pass runs on " + ctx.device.to_string());
}

template <typename T>
void check_tower(const char* op, std::size_t position, const char* tower, int k,
                 const RouterTowerArrays<T>& arrays, const UpdateRule* update) {
  const std::string where = "position " + std::to_string(position) + ", tower " + tower +
                            (k >= 0 ? std::to_string(k) : std::string()) + ": ";
  require(arrays.gradients != nullptr, op, where + "gradients are null");
  if (update == nullptr) return;
  require(arrays.weights != nullptr, op, where + "weights are null but an update was asked for");
  const bool needs_a = update->kind != UpdateKind::kSgd || update->sgd.momentum != 0.f;
  require(!needs_a || arrays.state_a != nullptr, op,
          where + "the rule's first state array (velocity, first moment or accumulator) is null");
  require(update->kind != UpdateKind::kAdam || arrays.state_b != nullptr, op,
          where + "Adam's second moment is null");
}

}  // namespace

template <typename T>
RouterProductTable<T> make_router_product_table(Device device, int num_aux,
                                                std::vector<RouterProductSegment<T>> segments) {
  const char* op = "make_router_product_table";
  check_num_aux(op, num_aux);
  std::int64_t offset = 0;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    RouterProductSegment<T>& segment = segments[s];
    const std::string where = "position " + std::to_string(s) + ": ";
    require(segment.n >= 0, op, where + "negative length " + std::to_string(segment.n));
    if (segment.n > 0) {
      require(segment.own != nullptr && segment.shared != nullptr, op,
              where + "the gradient of T1' or T1'' is null");
      for (int k = 0; k < num_aux; ++k) {
        require(segment.aux[k] != nullptr, op,
                where + "the gradient of auxiliary tower " + std::to_string(k) + " is null");
      }
    }
    segment.offset = offset;
    offset += segment.n;
  }
  return RouterProductTable<T>(device, std::move(segments));
}

template <typename T>
RouterApplyTable<T> make_router_apply_table(Device device, int num_aux,
                                            std::vector<RouterApplySegment<T>> segments) {
  const char* op = "make_router_apply_table";
  check_num_aux(op, num_aux);
  std::int64_t offset = 0;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    RouterApplySegment<T>& segment = segments[s];
    require(segment.n >= 0, op,
            "position " + std::to_string(s) + ": negative length " + std::to_string(segment.n));
    if (segment.n > 0) {
      check_tower(op, s, "own", -1, segment.own, nullptr);
      check_tower(op, s, "shared", -1, segment.shared, nullptr);
      for (int k = 0; k < num_aux; ++k) check_tower(op, s, "aux", k, segment.aux[k], nullptr);
    }
    segment.offset = offset;
    offset += segment.n;
  }
  return RouterApplyTable<T>(device, std::move(segments));
}

RouterWorkspace::RouterWorkspace(Device device) : device_(device) {
  state_ = static_cast<RouterState*>(allocate(device_, sizeof(RouterState)));
  try {
    write_state(RouterState{});
    if (device_.is_cuda()) {
      partials_ = static_cast<double*>(
          allocate(device_, sizeof(double) * std::size_t(kRouterBlocks) * kRouterMaxProducts));
    }
  } catch (...) {
    release(device_, state_);
    throw;
  }
}

RouterWorkspace::RouterWorkspace(RouterWorkspace&& other) noexcept {
  swap(other);
}

RouterWorkspace& RouterWorkspace::operator=(RouterWorkspace&& other) noexcept {
  RouterWorkspace moved(std::move(other));
  swap(moved);
  return *this;
}

RouterWorkspace::~RouterWorkspace() {
  try {
    if (state_ != nullptr) release(device_, state_);
    if (partials_ != nullptr) release(device_, partials_);
  } catch (...) {  // a destructor must not throw; the device is already failing
  }
}

void RouterWorkspace::swap(RouterWorkspace& other) noexcept {
  std::swap(device_, other.device_);
  std::swap(state_, other.state_);
  std::swap(partials_, other.partials_);
}

RouterState RouterWorkspace::read_state() const {
  RouterState host;
  copy_bytes(Device::cpu(), &host, device_, state_, sizeof(RouterState));
  return host;
}

void RouterWorkspace::write_state(const RouterState& state) {
  copy_bytes(device_, state_, Device::cpu(), &state, sizeof(RouterState));
}

void RouterWorkspace::read_mixing(double* mu_own, double* mu_shared) const {
  static_assert(offsetof(RouterState, mu_shared) == offsetof(RouterState, mu_own) + sizeof(double));
  double mixing[2];
  copy_bytes(Device::cpu(), mixing, device_, &state_->mu_own, sizeof(mixing));
  *mu_own = mixing[0];
  *mu_shared = mixing[1];
}

namespace cpu {

template <typename T>
void router_products(const RouterProductSegment<T>* segments, std::int64_t num_segments,
                     int num_aux, RouterState* state) {
  const int count = router_product_count(num_aux);
  double totals[kRouterMaxProducts] = {};
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RouterProductSegment<T>& segment = segments[s];
    double sums[kRouterMaxProducts] = {};
    for (std::int64_t i = 0; i < segment.n; ++i) {
      const double own = static_cast<double>(segment.own[i]);
      const double shared = static_cast<double>(segment.shared[i]);
      sums[kProductOwnNorm2] += own * own;
      sums[kProductSharedNorm2] += shared * shared;
      sums[kProductOwnDotShared] += own * shared;
      sums[kProductOwnSum] += own;
      for (int k = 0; k < num_aux; ++k) {
        const double aux = static_cast<double>(segment.aux[k][i]);
        sums[product_aux_norm2(k)] += aux * aux;
        sums[product_own_dot_aux(k)] += own * aux;
        sums[product_aux_sum(k)] += aux;
      }
    }
    for (int p = 0; p < count; ++p) totals[p] += sums[p];
  }
  for (int p = 0; p < kRouterMaxProducts; ++p) state->products[p] = p < count ? totals[p] : 0.0;
}

void router_coefficients(const RouterRule& rule, RouterState* state, const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  compute_router_coefficient_values(state->products, rule, &state->coefficients);
  for (int k = 0; k < rule.num_aux; ++k) ++state->case_counts[state->coefficients.sign_case[k]];
}

template <typename T>
void router_apply(const RouterApplySegment<T>* segments, std::int64_t num_segments, int num_aux,
                  const UpdateRule* update, bool write_gradients, RouterState* state,
                  const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  const RouterCoefficientValues& c = state->coefficients;
  const RouterCoefficientValues identity{};  // all coefficients zero: gradients unchanged
  double own_norm2 = 0, shared_norm2 = 0;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RouterApplySegment<T>& segment = segments[s];
    const RouterCoefficientValues& routing = segment.routed ? c : identity;
    double own_sum = 0, shared_sum = 0;
    for (std::int64_t i = 0; i < segment.n; ++i) {
      T g_aux[kRouterMaxAuxiliaryTowers];
      for (int k = 0; k < num_aux; ++k) g_aux[k] = segment.aux[k].gradients[i];
      T own, shared, aux[kRouterMaxAuxiliaryTowers];
      route_gradient_element<T, kRouterMaxAuxiliaryTowers>(
          routing, num_aux, segment.own.gradients[i], segment.shared.gradients[i], g_aux, &own,
          &shared, aux);
      own_sum += static_cast<double>(own) * own;
      shared_sum += static_cast<double>(shared) * shared;
      auto finish = [&](const RouterTowerArrays<T>& tower, T gradient) {
        if (write_gradients) tower.gradients[i] = gradient;
        if (update != nullptr) {
          apply_update_rule(*update, tower.weights[i], gradient,
                            tower.state_a == nullptr ? nullptr : tower.state_a + i,
                            tower.state_b == nullptr ? nullptr : tower.state_b + i);
        }
      };
      finish(segment.own, own);
      finish(segment.shared, shared);
      for (int k = 0; k < num_aux; ++k) finish(segment.aux[k], aux[k]);
    }
    own_norm2 += own_sum;
    shared_norm2 += shared_sum;
  }
  state->final_own_norm2 = own_norm2;
  state->final_shared_norm2 = shared_norm2;
}

void router_update_mixing(double rho, RouterState* state, const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  mixing_accumulate(rho, std::sqrt(state->final_own_norm2), std::sqrt(state->final_shared_norm2),
                    &state->sigma_own, &state->sigma_shared);
  mixing_softmax(state->sigma_own, state->sigma_shared, &state->mu_own, &state->mu_shared);
}

#define DRGRAD_INSTANTIATE_CPU_ROUTER(T)                                              \
  template void router_products<T>(const RouterProductSegment<T>*, std::int64_t, int, \
                                   RouterState*);                                     \
  template void router_apply<T>(const RouterApplySegment<T>*, std::int64_t, int,      \
                                const UpdateRule*, bool, RouterState*, const std::int64_t*);
DRGRAD_INSTANTIATE_CPU_ROUTER(float)
DRGRAD_INSTANTIATE_CPU_ROUTER(double)
#undef DRGRAD_INSTANTIATE_CPU_ROUTER

}  // namespace cpu

template <typename T>
void router_products(const Context& ctx, const RouterProductTable<T>& table, int num_aux,
                     RouterWorkspace& workspace) {
  const char* op = "router_products";
  check_num_aux(op, num_aux);
  if (!table.empty()) check_table_device(op, table.device(), ctx);
  check_workspace(op, workspace, ctx);
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      std::int64_t total = 0;
      for (const auto& segment : table.host()) total += segment.n;
      DRGRAD_CUDA_TWIN(cuda::router_products(ctx, table.data(), table.size(), total, num_aux,
                                             workspace.state(), workspace.partials()));
      return;
    } else {
      throw_double_on_cuda(op);
    }
  }
  cpu::router_products(table.data(), table.size(), num_aux, workspace.state());
}

void router_coefficients(const Context& ctx, const RouterRule& rule, RouterWorkspace& workspace,
                         const std::int64_t* skip) {
  const char* op = "router_coefficients";
  check_num_aux(op, rule.num_aux);
  require(rule.gamma > 0, op, "gamma " + std::to_string(rule.gamma) + " must be positive");
  check_workspace(op, workspace, ctx);
  if (ctx.device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::router_coefficients(ctx, rule, workspace.state(), skip));
    return;
  }
  cpu::router_coefficients(rule, workspace.state(), skip);
}

template <typename T>
void router_apply(const Context& ctx, const RouterApplyTable<T>& table, int num_aux,
                  const UpdateRule* update, bool write_gradients, RouterWorkspace& workspace,
                  const std::int64_t* skip) {
  const char* op = "router_apply";
  check_num_aux(op, num_aux);
  if (!table.empty()) check_table_device(op, table.device(), ctx);
  check_workspace(op, workspace, ctx);
  if (update != nullptr) {
    check_update_rule(op, *update);
    for (std::size_t s = 0; s < table.host().size(); ++s) {
      const RouterApplySegment<T>& segment = table.host()[s];
      if (segment.n == 0) continue;
      check_tower(op, s, "own", -1, segment.own, update);
      check_tower(op, s, "shared", -1, segment.shared, update);
      for (int k = 0; k < num_aux; ++k) check_tower(op, s, "aux", k, segment.aux[k], update);
    }
  }
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(cuda::router_apply(ctx, table.data(), table.size(), num_aux, update,
                                          write_gradients, workspace.state(), workspace.partials(),
                                          skip));
      return;
    } else {
      throw_double_on_cuda(op);
    }
  }
  cpu::router_apply(table.data(), table.size(), num_aux, update, write_gradients, workspace.state(),
                    skip);
}

void router_update_mixing(const Context& ctx, double rho, RouterWorkspace& workspace,
                          const std::int64_t* skip) {
  const char* op = "router_update_mixing";
  require(rho >= 0 && rho <= 1, op, "rho " + std::to_string(rho) + " must be in [0, 1]");
  check_workspace(op, workspace, ctx);
  if (ctx.device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::router_update_mixing(ctx, rho, workspace.state(), skip));
    return;
  }
  cpu::router_update_mixing(rho, workspace.state(), skip);
}

#define DRGRAD_INSTANTIATE_ROUTER(T)                                                           \
  template RouterProductTable<T> make_router_product_table<T>(                                 \
      Device, int, std::vector<RouterProductSegment<T>>);                                      \
  template RouterApplyTable<T> make_router_apply_table<T>(Device, int,                         \
                                                          std::vector<RouterApplySegment<T>>); \
  template void router_products<T>(const Context&, const RouterProductTable<T>&, int,          \
                                   RouterWorkspace&);                                          \
  template void router_apply<T>(const Context&, const RouterApplyTable<T>&, int,               \
                                const UpdateRule*, bool, RouterWorkspace&, const std::int64_t*);
DRGRAD_INSTANTIATE_ROUTER(float)
DRGRAD_INSTANTIATE_ROUTER(double)
#undef DRGRAD_INSTANTIATE_ROUTER

}  // namespace drgrad::kernels
