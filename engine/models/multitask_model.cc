// MultiTaskModel: wiring of input, backbone, personalized gate and towers; logits gathered into
// one matrix.
#include "engine/models/multitask_model.h"

#include "engine/multitask/task_gradients.h"
#include "kernels/core/memory.h"
#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

template <typename T>
MultiTaskModel<T>::MultiTaskModel(const ModelSpec& spec, kernels::Context ctx, std::uint64_t seed)
    : spec_(spec),
      ctx_(ctx),
      store_(dtype_of<T>(), ctx.device),
      init_random_(seed),
      mixing_(Shape{2}, DType::kFloat64, ctx.device) {
  spec_.validate();
  set_mixing(0.5, 0.5);
  LayerBuilder builder{store_, init_random_, ctx_};
  input_ = std::make_unique<FeatureInput<T>>(builder, spec_.num_dense, spec_.slots);
  input_width_ = input_->out_features();
  backbone_ = make_backbone<T>(builder, spec_, input_width_);
  const std::int64_t width = backbone_->out_features();
  if (!spec_.split.personal_slots.empty()) {
    std::int64_t personal_width = 0;
    for (const auto& name : spec_.split.personal_slots) {
      personal_columns_.push_back(input_->column_of(name));
      for (const auto& slot : spec_.slots) {
        if (slot.name == name) personal_dims_.push_back(slot.dim);
      }
      personal_width += personal_dims_.back();
    }
    personal_gate_ = std::make_unique<PersonalizedGate<T>>(builder, "backbone/personal_gate",
                                                           "backbone", personal_width, width,
                                                           spec_.split.stop_personal_gradient);
  }
  std::vector<std::int64_t> tower_units = spec_.tower_units;
  tower_units.push_back(1);
  towers_.reserve(spec_.tasks.size());
  for (int k = 0; k < static_cast<int>(spec_.tasks.size()); ++k) {
    const bool primary = spec_.split.enabled && k == spec_.split.primary_task;
    const std::string group = primary ? primary_own_group() : tower_group(k);
    towers_.emplace_back(builder, group, group, width, tower_units, spec_.activation, false);
  }
  if (spec_.split.enabled) {
    primary_shared_tower_ =
        std::make_unique<Mlp<T>>(builder, primary_shared_group(), primary_shared_group(), width,
                                 tower_units, spec_.activation, false);
  }
}

template <typename T>
std::string MultiTaskModel<T>::tower_group(int task) const {
  return "tower/" + spec_.tasks.at(task).name;
}

template <typename T>
std::string MultiTaskModel<T>::primary_own_group() const {
  return tower_group(spec_.split.primary_task) + "/own";
}

template <typename T>
std::string MultiTaskModel<T>::primary_shared_group() const {
  return tower_group(spec_.split.primary_task) + "/shared";
}

template <typename T>
void MultiTaskModel<T>::set_mixing(double mu_own, double mu_shared) {
  mixing_.copy_from(Tensor::from_vector<double>({2}, {mu_own, mu_shared}));
}

template <typename T>
void MultiTaskModel<T>::copy_mixing_from(const double* mu_own_then_shared) {
  kernels::copy_bytes(ctx_.device, mixing_.data<double>(), ctx_.device, mu_own_then_shared,
                      mixing_.bytes());
}

template <typename T>
double MultiTaskModel<T>::mu_own() const {
  return mixing_.to_vector<double>()[0];
}

template <typename T>
double MultiTaskModel<T>::mu_shared() const {
  return mixing_.to_vector<double>()[1];
}

template <typename T>
bool MultiTaskModel<T>::tower_reads_shared(int task) const {
  return spec_.split.enabled && task != spec_.split.primary_task && spec_.split.aux_read_shared;
}

template <typename T>
Tensor MultiTaskModel<T>::forward(const io::Batch& batch) {
  return forward_input(input_->forward(batch));
}

template <typename T>
Tensor MultiTaskModel<T>::forward(const StagedInput& staged) {
  return forward_input(input_->forward(staged));
}

template <typename T>
Tensor MultiTaskModel<T>::forward_input(const Tensor& x) {
  batch_ = x.dim(0);
  const auto num_tasks = static_cast<std::int64_t>(towers_.size());
  BackboneOutput representations = backbone_->forward(x);
  Tensor shared = representations.shared;
  if (personal_gate_) {
    std::int64_t personal_width = 0;
    for (const auto dim : personal_dims_) personal_width += dim;
    Tensor personal(Shape{batch_, personal_width}, dtype_of<T>(), ctx_.device);
    std::int64_t column = 0;
    for (std::size_t s = 0; s < personal_columns_.size(); ++s) {
      kernels::copy_rows<T>(ctx_, x.data<T>() + personal_columns_[s], input_width_,
                            personal.data<T>() + column, personal_width, batch_, personal_dims_[s],
                            false);
      column += personal_dims_[s];
    }
    shared = personal_gate_->forward(shared, personal);
  }
  Tensor logits(Shape{batch_, num_tasks}, dtype_of<T>(), ctx_.device);
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    const bool primary = spec_.split.enabled && k == spec_.split.primary_task;
    Tensor logit = towers_[k].forward(
        tower_reads_shared(static_cast<int>(k)) ? shared : representations.tasks[k]);
    if (primary) {
      // y = mu' T'(v1) + mu'' T''(v_s)
      const Tensor from_shared = primary_shared_tower_->forward(shared);
      Tensor mixed = Tensor::zeros(logit.shape(), logit.dtype(), ctx_.device);
      const double* mixing = mixing_.data<double>();
      kernels::axpy_scalar_in_memory<T>(ctx_, batch_, mixing, logit.data<T>(), mixed.data<T>());
      kernels::axpy_scalar_in_memory<T>(ctx_, batch_, mixing + 1, from_shared.data<T>(),
                                        mixed.data<T>());
      logit = mixed;
    }
    kernels::copy_rows<T>(ctx_, logit.data<T>(), 1, logits.data<T>() + k, num_tasks, batch_, 1,
                          false);
  }
  return logits;
}

template <typename T>
void MultiTaskModel<T>::backward(const Tensor& d_logits) {
  const auto num_tasks = static_cast<std::int64_t>(towers_.size());
  std::vector<Tensor> d_representations(static_cast<std::size_t>(num_tasks));
  std::vector<Tensor> d_shared_parts;
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    Tensor d_logit(Shape{batch_, 1}, dtype_of<T>(), ctx_.device);
    kernels::copy_rows<T>(ctx_, d_logits.data<T>() + k, num_tasks, d_logit.data<T>(), 1, batch_, 1,
                          false);
    const bool primary = spec_.split.enabled && k == spec_.split.primary_task;
    if (primary) {
      Tensor d_own = Tensor::zeros(d_logit.shape(), d_logit.dtype(), ctx_.device);
      Tensor d_from_shared = Tensor::zeros(d_logit.shape(), d_logit.dtype(), ctx_.device);
      const double* mixing = mixing_.data<double>();
      kernels::axpy_scalar_in_memory<T>(ctx_, batch_, mixing, d_logit.data<T>(), d_own.data<T>());
      kernels::axpy_scalar_in_memory<T>(ctx_, batch_, mixing + 1, d_logit.data<T>(),
                                        d_from_shared.data<T>());
      d_representations[k] = towers_[k].backward(d_own);
      d_shared_parts.push_back(primary_shared_tower_->backward(d_from_shared));
    } else if (tower_reads_shared(static_cast<int>(k))) {
      d_shared_parts.push_back(towers_[k].backward(d_logit));
    } else {
      d_representations[k] = towers_[k].backward(d_logit);
    }
  }
  Tensor d_shared;
  for (const Tensor& part : d_shared_parts) {
    if (!d_shared.defined()) {
      d_shared = part.clone();
    } else {
      kernels::axpy<T>(ctx_, d_shared.numel(), T(1), part.data<T>(), d_shared.data<T>());
    }
  }
  Tensor d_personal;
  if (personal_gate_ && d_shared.defined()) {
    std::tie(d_shared, d_personal) = personal_gate_->backward(d_shared);
  }
  Tensor d_x = backbone_->backward(d_representations, d_shared);
  if (d_personal.defined()) {
    const std::int64_t personal_width = d_personal.dim(1);
    std::int64_t column = 0;
    for (std::size_t s = 0; s < personal_columns_.size(); ++s) {
      kernels::copy_rows<T>(ctx_, d_personal.data<T>() + column, personal_width,
                            d_x.data<T>() + personal_columns_[s], input_width_, batch_,
                            personal_dims_[s], true);
      column += personal_dims_[s];
    }
  }
  input_->backward(d_x);
}

template <typename T>
void MultiTaskModel<T>::backward_per_task(const Tensor& d_logits, TaskGram gram) {
  if (spec_.split.enabled) {
    throw kernels::NotSupportedError(
        "gradient surgery (pcgrad, cagrad) runs on plain backbones; set model.split_towers = "
        "false or use strategy drgrad");
  }
  const auto num_tasks = static_cast<std::int64_t>(towers_.size());
  zero_task_gradients(store_, "backbone", num_tasks, gram);
  zero_task_gradients(store_, "embeddings", num_tasks);
  std::vector<Tensor> d_representations;
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    Tensor d_logit(Shape{batch_, 1}, dtype_of<T>(), ctx_.device);
    kernels::copy_rows<T>(ctx_, d_logits.data<T>() + k, num_tasks, d_logit.data<T>(), 1, batch_, 1,
                          false);
    d_representations.push_back(towers_[k].backward(d_logit));
  }
  input_->backward_stacked(backbone_->backward_stacked(d_representations));
}

template class MultiTaskModel<float>;
template class MultiTaskModel<double>;

}  // namespace drgrad::engine
