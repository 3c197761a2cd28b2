// MultiTaskModel: wiring of input, backbone and towers; logits gathered into one matrix.
#include "engine/models/multitask_model.h"

#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

template <typename T>
MultiTaskModel<T>::MultiTaskModel(const ModelSpec& spec, kernels::Context ctx, std::uint64_t seed)
    : spec_(spec), ctx_(ctx), store_(dtype_of<T>(), ctx.device), init_random_(seed) {
  spec_.validate();
  LayerBuilder builder{store_, init_random_, ctx_};
  input_ = std::make_unique<FeatureInput<T>>(builder, spec_.num_dense, spec_.slots);
  backbone_ = make_backbone<T>(builder, spec_, input_->out_features());
  std::vector<std::int64_t> tower_units = spec_.tower_units;
  tower_units.push_back(1);
  towers_.reserve(spec_.tasks.size());
  for (const auto& task : spec_.tasks) {
    towers_.emplace_back(builder, "tower/" + task.name, "tower/" + task.name,
                         backbone_->out_features(), tower_units, spec_.activation, false);
  }
}

template <typename T>
Tensor MultiTaskModel<T>::forward(const io::Batch& batch) {
  batch_ = batch.size;
  const auto num_tasks = static_cast<std::int64_t>(towers_.size());
  const Tensor x = input_->forward(batch);
  const std::vector<Tensor> representations = backbone_->forward(x);
  Tensor logits(Shape{batch_, num_tasks}, dtype_of<T>(), ctx_.device);
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    const Tensor logit = towers_[k].forward(representations[k]);
    kernels::copy_rows<T>(ctx_, logit.data<T>(), 1, logits.data<T>() + k, num_tasks, batch_, 1,
                          false);
  }
  return logits;
}

template <typename T>
void MultiTaskModel<T>::backward(const Tensor& d_logits) {
  const auto num_tasks = static_cast<std::int64_t>(towers_.size());
  std::vector<Tensor> d_representations;
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    Tensor d_logit(Shape{batch_, 1}, dtype_of<T>(), ctx_.device);
    kernels::copy_rows<T>(ctx_, d_logits.data<T>() + k, num_tasks, d_logit.data<T>(), 1, batch_, 1,
                          false);
    d_representations.push_back(towers_[k].backward(d_logit));
  }
  const Tensor d_x = backbone_->backward(d_representations);
  input_->backward(d_x);
}

template class MultiTaskModel<float>;
template class MultiTaskModel<double>;

}  // namespace drgrad::engine
