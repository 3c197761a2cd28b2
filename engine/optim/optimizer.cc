// Optimizer: state allocation, and the cached multi-tensor tables of the dense parameters and of
// the embedding tables' touched rows.
#include "engine/optim/optimizer.h"

#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

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
Optimizer<T>::Optimizer(const OptimizerSpec& spec, const ParameterStore& store)
    : spec_(spec), device_(store.device()) {
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

// The kernels read the two corrections through a pointer to the struct; the array holds them as two
// adjacent doubles.
static_assert(sizeof(kernels::AdamBiasCorrection) == 2 * sizeof(double) &&
                  std::is_standard_layout_v<kernels::AdamBiasCorrection>,
              "AdamBiasCorrection must be two adjacent doubles");

template <typename T>
void Optimizer<T>::keep_step_scalars_in_memory() {
  if (!step_scalars_.defined()) step_scalars_ = Tensor::zeros(Shape{2}, DType::kFloat64, device_);
}

template <typename T>
void Optimizer<T>::upload_step_scalars(std::int64_t step) {
  if (!step_scalars_.defined()) {
    throw std::logic_error("Optimizer::upload_step_scalars before keep_step_scalars_in_memory");
  }
  kernels::AdamBiasCorrection correction;
  if (spec_.kind == OptimizerKind::kAdam) {
    correction = kernels::adam_bias_correction(
        {static_cast<float>(spec_.learning_rate), static_cast<float>(spec_.beta1),
         static_cast<float>(spec_.beta2)},
        step);
  }
  const double values[2] = {correction.first, correction.second};
  step_scalars_.copy_from_host(values);
}

template <typename T>
kernels::UpdateRule Optimizer<T>::rule_for(std::int64_t step, double learning_rate) const {
  const auto rate = static_cast<float>(learning_rate);
  switch (spec_.kind) {
    case OptimizerKind::kSgd:
      return kernels::sgd_rule(
          {rate, static_cast<float>(spec_.momentum), static_cast<float>(spec_.weight_decay)});
    case OptimizerKind::kAdam: {
      kernels::UpdateRule rule = kernels::adam_rule(
          {rate, static_cast<float>(spec_.beta1), static_cast<float>(spec_.beta2),
           static_cast<float>(spec_.epsilon), static_cast<float>(spec_.weight_decay)},
          step);
      if (step_scalars_.defined()) {
        rule.adam_correction_in_memory =
            reinterpret_cast<const kernels::AdamBiasCorrection*>(step_scalars_.data<double>());
      }
      return rule;
    }
    case OptimizerKind::kAdagrad:
      return kernels::adagrad_rule(
          {rate, static_cast<float>(spec_.epsilon), static_cast<float>(spec_.weight_decay)});
  }
  throw std::logic_error("unknown optimizer kind");
}

template <typename T>
kernels::UpdateRule Optimizer<T>::next_dense_rule() const {
  return rule_for(steps_ + 1, spec_.learning_rate);
}

template <typename T>
std::pair<T*, T*> Optimizer<T>::state_arrays(const Parameter& parameter) {
  switch (spec_.kind) {
    case OptimizerKind::kSgd:
      return {state_of(parameter, "velocity").template data<T>(), nullptr};
    case OptimizerKind::kAdam:
      return {state_of(parameter, "first_moment").template data<T>(),
              state_of(parameter, "second_moment").template data<T>()};
    case OptimizerKind::kAdagrad:
      return {state_of(parameter, "accumulator").template data<T>(), nullptr};
  }
  return {nullptr, nullptr};
}

namespace {
template <typename T>
bool same_segments(const std::vector<kernels::DenseUpdateSegment<T>>& a,
                   const std::vector<kernels::DenseUpdateSegment<T>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].weights != b[i].weights || a[i].gradients != b[i].gradients ||
        a[i].state_a != b[i].state_a || a[i].state_b != b[i].state_b || a[i].n != b[i].n) {
      return false;
    }
  }
  return true;
}

template <typename T>
bool same_row_segments(const std::vector<kernels::RowUpdateSegment<T>>& a,
                       const std::vector<kernels::RowUpdateSegment<T>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].table != b[i].table || a[i].table_rows != b[i].table_rows || a[i].dim != b[i].dim ||
        a[i].rows != b[i].rows || a[i].values != b[i].values ||
        a[i].num_rows_device != b[i].num_rows_device || a[i].capacity != b[i].capacity ||
        a[i].state_a != b[i].state_a || a[i].state_b != b[i].state_b) {
      return false;
    }
  }
  return true;
}
}  // namespace

template <typename T>
void Optimizer<T>::step(ParameterStore& store) {
  ++steps_;
  const kernels::Context ctx{store.device(), nullptr};

  // Dense parameters: one multi-tensor pass.
  std::vector<kernels::DenseUpdateSegment<T>> segments;
  for (const auto& pointer : store.all()) {
    Parameter& parameter = *pointer;
    if (parameter.row_sparse || skip_next_.count(&parameter) != 0) continue;
    if (parameter.value.numel() == 0) continue;
    kernels::DenseUpdateSegment<T> segment;
    segment.weights = parameter.value.template data<T>();
    segment.gradients = parameter.gradient.template data<T>();
    std::tie(segment.state_a, segment.state_b) = state_arrays(parameter);
    segment.n = parameter.value.numel();
    segments.push_back(segment);
  }
  if (dense_table_.empty() || !same_segments(segments, dense_segments_)) {
    dense_segments_ = segments;
    dense_table_ = kernels::make_dense_update_table<T>(store.device(), std::move(segments));
  }
  kernels::fused_dense_update<T>(ctx, rule_for(steps_, spec_.learning_rate), dense_table_,
                                 skip_flag_);

  // Embedding tables: the touched rows of every table in one pass, each table's row count read
  // where the update runs (a device-built plan's count never comes back to the host).
  const double embedding_rate =
      spec_.embedding_learning_rate > 0 ? spec_.embedding_learning_rate : spec_.learning_rate;
  std::vector<kernels::RowUpdateSegment<T>> row_segments;
  for (const auto& pointer : store.all()) {
    Parameter& parameter = *pointer;
    if (!parameter.row_sparse || skip_next_.count(&parameter) != 0) continue;
    if (parameter.touched_row_capacity() == 0) continue;
    if (!parameter.touched_row_count_device.defined() || !parameter.gradient.defined() ||
        parameter.gradient.dim(0) != parameter.touched_row_capacity()) {
      throw std::logic_error("optimizer: embedding table '" + parameter.name +
                             "' has touched rows without a row count or a gradient of " +
                             std::to_string(parameter.touched_row_capacity()) +
                             " rows; its backward must set all three");
    }
    kernels::RowUpdateSegment<T> segment;
    segment.table = parameter.value.template data<T>();
    segment.table_rows = parameter.value.dim(0);
    segment.dim = parameter.value.dim(1);
    segment.rows = parameter.touched_rows_device.template data<std::int64_t>();
    segment.values = parameter.gradient.template data<T>();
    segment.num_rows_device = parameter.touched_row_count_device.template data<std::int64_t>();
    segment.capacity = parameter.touched_row_capacity();
    std::tie(segment.state_a, segment.state_b) = state_arrays(parameter);
    row_segments.push_back(segment);
  }
  if (!same_row_segments(row_segments, row_segments_)) {
    row_segments_ = row_segments;
    row_table_ = kernels::make_row_update_table<T>(store.device(), std::move(row_segments));
  }
  kernels::fused_row_update<T>(ctx, rule_for(steps_, embedding_rate), row_table_, skip_flag_);
  skip_next_.clear();
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace drgrad::engine
