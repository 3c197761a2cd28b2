// SoftmaxGate: a linear layer to gate logits, then the fused softmax and gated combination
// (kernels::gate_combine_*, one kernel each way on CUDA).
#include "engine/layers/gate.h"

#include <stdexcept>

namespace drgrad::engine {

namespace {
kernels::ExpertSelection make_selection(const std::vector<int>& selected) {
  if (selected.empty() ||
      selected.size() > static_cast<std::size_t>(kernels::ExpertSelection::kMaxExperts)) {
    throw std::invalid_argument("a gate mixes between 1 and " +
                                std::to_string(kernels::ExpertSelection::kMaxExperts) +
                                " experts, got " + std::to_string(selected.size()));
  }
  kernels::ExpertSelection selection;
  selection.count = static_cast<int>(selected.size());
  for (std::size_t i = 0; i < selected.size(); ++i) selection.index[i] = selected[i];
  return selection;
}
}  // namespace

template <typename T>
SoftmaxGate<T>::SoftmaxGate(LayerBuilder& builder, const std::string& name,
                            const std::string& group, std::int64_t in_features,
                            const std::vector<int>& selected)
    : ctx_(builder.ctx),
      selection_(make_selection(selected)),
      logits_(builder, name, group, in_features, static_cast<std::int64_t>(selected.size())) {}

template <typename T>
Tensor SoftmaxGate<T>::forward(const Tensor& x, const Tensor& experts) {
  const std::int64_t batch = x.dim(0);
  const std::int64_t dim = experts.dim(2);
  experts_ = experts;
  Tensor logits = logits_.forward(x);
  probabilities_ = Tensor(logits.shape(), logits.dtype(), logits.device());
  Tensor out(Shape{batch, dim}, dtype_of<T>(), x.device());
  kernels::gate_combine_forward<T>(ctx_, logits.data<T>(), experts.data<T>(), selection_, batch,
                                   dim, probabilities_.data<T>(), out.data<T>());
  return out;
}

template <typename T>
Tensor SoftmaxGate<T>::backward(const Tensor& d_out, Tensor& d_experts, bool need_input_gradient) {
  const std::int64_t batch = d_out.dim(0);
  const std::int64_t dim = d_out.dim(1);
  Tensor d_logits(probabilities_.shape(), probabilities_.dtype(), d_out.device());
  kernels::gate_combine_backward<T>(ctx_, experts_.data<T>(), probabilities_.data<T>(),
                                    d_out.data<T>(), selection_, batch, dim, d_experts.data<T>(),
                                    d_logits.data<T>());
  return logits_.backward(d_logits, need_input_gradient);
}

template <typename T>
Tensor SoftmaxGate<T>::backward_stacked(const Tensor& d_out_stacked, Tensor& d_experts_stacked,
                                        bool need_input_gradient) {
  const std::int64_t batch = probabilities_.dim(0);
  const std::int64_t dim = experts_.dim(2);
  const std::int64_t all_experts = experts_.dim(0);
  if (d_out_stacked.rank() != 3 || d_out_stacked.dim(1) != batch || d_out_stacked.dim(2) != dim) {
    throw std::invalid_argument("gate stacked backward expects [tasks, " + std::to_string(batch) +
                                ", " + std::to_string(dim) + "], got " +
                                shape_to_string(d_out_stacked.shape()));
  }
  const std::int64_t tasks = d_out_stacked.dim(0);
  if (d_experts_stacked.shape() != Shape{tasks, all_experts, batch, dim}) {
    throw std::invalid_argument("gate stacked backward: d_experts_stacked must be " +
                                shape_to_string({tasks, all_experts, batch, dim}) + ", got " +
                                shape_to_string(d_experts_stacked.shape()));
  }
  const std::int64_t count = selection_.count;
  // The probabilities and expert outputs are shared; each task's upstream goes through them (one
  // launch for all tasks on CUDA).
  Tensor d_logits(Shape{tasks, batch, count}, dtype_of<T>(), d_out_stacked.device());
  kernels::gate_combine_backward_stacked<T>(
      ctx_, experts_.data<T>(), probabilities_.data<T>(), d_out_stacked.data<T>(), selection_,
      tasks, all_experts, batch, dim, d_experts_stacked.data<T>(), d_logits.data<T>());
  return logits_.backward_stacked(d_logits, need_input_gradient);
}

template <typename T>
Tensor SoftmaxGate<T>::backward_task(std::int64_t task, std::int64_t tasks, const Tensor& d_out,
                                     Tensor& d_experts, bool need_input_gradient) {
  const std::int64_t batch = probabilities_.dim(0);
  const std::int64_t dim = experts_.dim(2);
  if (d_out.shape() != Shape{batch, dim} || d_experts.shape() != experts_.shape()) {
    throw std::invalid_argument(
        "gate backward_task expects d_out " + shape_to_string({batch, dim}) + " and d_experts " +
        shape_to_string(experts_.shape()) + ", got " + shape_to_string(d_out.shape()) + " and " +
        shape_to_string(d_experts.shape()));
  }
  const std::int64_t count = selection_.count;
  Tensor d_logits(Shape{batch, count}, dtype_of<T>(), d_out.device());
  kernels::gate_combine_backward<T>(ctx_, experts_.data<T>(), probabilities_.data<T>(),
                                    d_out.data<T>(), selection_, batch, dim, d_experts.data<T>(),
                                    d_logits.data<T>());
  return logits_.backward_task(task, tasks, d_logits, need_input_gradient);
}

template class SoftmaxGate<float>;
template class SoftmaxGate<double>;

}  // namespace drgrad::engine
