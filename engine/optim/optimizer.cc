// Optimizer: state allocation and per-parameter dispatch to the update kernels.
#include "engine/optim/optimizer.h"

#include <stdexcept>

#include "kernels/optimizer/optimizer.h"

namespace drgrad::engine {

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adam" || name == "adamw") return OptimizerKind::kAdam;
  if (name == "adagrad") return OptimizerKind::kAdagrad;
  throw std::invalid_argument("unknown optimizer '" + name + "': use sgd, adam or adagrad");
}

namespace {
std::vector<const char*> slots_of(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return {"velocity"};
    case OptimizerKind::kAdam:
      return {"first_moment", "second_moment"};
    case OptimizerKind::kAdagrad:
      return {"accumulator"};
  }
  return {};
}
}  // namespace

template <typename T>
Optimizer<T>::Optimizer(const OptimizerSpec& spec, const ParameterStore& store) : spec_(spec) {
  if (!(spec.learning_rate > 0)) {
    throw std::invalid_argument("optimizer.learning_rate must be positive");
  }
  for (const auto& parameter : store.all()) {
    for (const char* slot : slots_of(spec.kind)) {
      Tensor state = Tensor::zeros(parameter->value.shape(), parameter->value.dtype(),
                                   parameter->value.device());
      if (spec.kind == OptimizerKind::kAdagrad && spec.initial_accumulator != 0) {
        std::vector<T> filled(static_cast<std::size_t>(state.numel()),
                              static_cast<T>(spec.initial_accumulator));
        state.copy_from(Tensor::from_vector<T>(state.shape(), filled));
      }
      state_[parameter->name + "/" + slot] = state;
    }
  }
}

template <typename T>
Tensor& Optimizer<T>::state_of(const Parameter& parameter, const char* slot) {
  return state_.at(parameter.name + "/" + slot);
}

template <typename T>
void Optimizer<T>::step(ParameterStore& store) {
  ++steps_;
  for (const auto& pointer : store.all()) {
    Parameter& parameter = *pointer;
    const kernels::Context ctx{parameter.value.device(), nullptr};
    const double rate = parameter.row_sparse && spec_.embedding_learning_rate > 0
                            ? spec_.embedding_learning_rate
                            : spec_.learning_rate;
    T* weights = parameter.value.template data<T>();
    kernels::RowSparseGradient<T> rows;
    if (parameter.row_sparse) {
      if (parameter.touched_rows.empty()) continue;
      rows.rows = parameter.touched_rows_device.template data<std::int64_t>();
      rows.values = parameter.gradient.template data<T>();
      rows.num_rows = static_cast<std::int64_t>(parameter.touched_rows.size());
      rows.dim = parameter.value.dim(1);
    }
    const std::int64_t table_rows = parameter.row_sparse ? parameter.value.dim(0) : 0;
    switch (spec_.kind) {
      case OptimizerKind::kSgd: {
        const kernels::SgdOptions options{static_cast<float>(rate),
                                          static_cast<float>(spec_.momentum),
                                          static_cast<float>(spec_.weight_decay)};
        T* velocity = state_of(parameter, "velocity").template data<T>();
        if (parameter.row_sparse) {
          kernels::sgd_update_rows<T>(ctx, options, weights, table_rows, rows, velocity);
        } else {
          kernels::sgd_update<T>(ctx, options, weights, parameter.gradient.template data<T>(),
                                 velocity, parameter.value.numel());
        }
        break;
      }
      case OptimizerKind::kAdam: {
        const kernels::AdamOptions options{
            static_cast<float>(rate), static_cast<float>(spec_.beta1),
            static_cast<float>(spec_.beta2), static_cast<float>(spec_.epsilon),
            static_cast<float>(spec_.weight_decay)};
        T* first = state_of(parameter, "first_moment").template data<T>();
        T* second = state_of(parameter, "second_moment").template data<T>();
        if (parameter.row_sparse) {
          kernels::adam_update_rows<T>(ctx, options, steps_, weights, table_rows, rows, first,
                                       second);
        } else {
          kernels::adam_update<T>(ctx, options, steps_, weights,
                                  parameter.gradient.template data<T>(), first, second,
                                  parameter.value.numel());
        }
        break;
      }
      case OptimizerKind::kAdagrad: {
        const kernels::AdagradOptions options{static_cast<float>(rate),
                                              static_cast<float>(spec_.epsilon),
                                              static_cast<float>(spec_.weight_decay)};
        T* accumulator = state_of(parameter, "accumulator").template data<T>();
        if (parameter.row_sparse) {
          kernels::adagrad_update_rows<T>(ctx, options, weights, table_rows, rows, accumulator);
        } else {
          kernels::adagrad_update<T>(ctx, options, weights, parameter.gradient.template data<T>(),
                                     accumulator, parameter.value.numel());
        }
        break;
      }
    }
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace drgrad::engine
