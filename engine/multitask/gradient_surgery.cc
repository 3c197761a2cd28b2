// GradientSurgery: the Gram matrix of the whole parameter set summed on the device (the Gram a
// stacked backward already left, or one pass over the per-task gradients), one read of its
// K x K entries, the weights on the host, one combination pass per parameter.
#include "engine/multitask/gradient_surgery.h"

#include <stdexcept>

#include "engine/multitask/task_gradients.h"
#include "kernels/multitask/task_gradient_gram.h"

namespace drgrad::engine {

SurgeryMethod parse_surgery_method(const std::string& name) {
  if (name == "pcgrad") return SurgeryMethod::kPcgrad;
  if (name == "cagrad") return SurgeryMethod::kCagrad;
  throw std::invalid_argument("unknown gradient surgery method '" + name +
                              "': use pcgrad or cagrad");
}

const char* surgery_method_name(SurgeryMethod method) {
  return method == SurgeryMethod::kPcgrad ? "pcgrad" : "cagrad";
}

GradientSurgery::GradientSurgery(kernels::Context ctx, GradientSurgeryOptions options)
    : ctx_(ctx), options_(options) {}

namespace {
// Elements per task of a parameter's per-task gradient.
std::int64_t per_task_elements(const Parameter& parameter) {
  return parameter.task_gradients.numel() / parameter.task_gradients.dim(0);
}

// gram (K x K on ctx's device) += the parameter's task Gram: the one its stacked backward left
// when that is current, else one pass over its per-task gradients. Returns true in the first case.
template <typename T>
bool accumulate_gram(const kernels::Context& ctx, const Parameter& parameter, std::int64_t tasks,
                     double* gram) {
  if (has_current_task_gram(parameter, tasks)) {
    kernels::add_task_gram(ctx, parameter.task_gram.data<double>(), tasks, gram);
    return true;
  }
  kernels::accumulate_task_gram_on_device<T>(ctx, parameter.task_gradients.data<T>(), tasks,
                                             per_task_elements(parameter), gram);
  return false;
}

template <typename T>
void write_combined(const kernels::Context& ctx, Parameter& parameter, std::int64_t tasks,
                    const std::vector<double>& weights) {
  const Shape shape = parameter.row_sparse
                          ? Shape{parameter.task_gradients.dim(1), parameter.task_gradients.dim(2)}
                          : parameter.value.shape();
  if (!parameter.gradient.defined() || parameter.gradient.shape() != shape) {
    parameter.gradient = Tensor(shape, parameter.value.dtype(), parameter.value.device());
  }
  kernels::combine_task_gradients<T>(ctx, parameter.task_gradients.data<T>(), tasks,
                                     per_task_elements(parameter), weights.data(),
                                     parameter.gradient.data<T>());
}
}  // namespace

const std::vector<double>& GradientSurgery::apply(const std::vector<Parameter*>& parameters) {
  std::int64_t tasks = 0;
  for (const Parameter* parameter : parameters) {
    const Tensor& per_task = parameter->task_gradients;
    const int expected_rank = parameter->row_sparse ? 3 : 2;
    if (!per_task.defined() || per_task.rank() != expected_rank) {
      throw std::logic_error("gradient surgery: parameter '" + parameter->name +
                             "' has no per-task gradients; call zero_task_gradients and the "
                             "stacked backward (backward_stacked) before applying " +
                             surgery_method_name(options_.method));
    }
    if (tasks == 0) tasks = per_task.dim(0);
    if (per_task.dim(0) != tasks) {
      throw std::logic_error("gradient surgery: parameter '" + parameter->name + "' has " +
                             std::to_string(per_task.dim(0)) + " per-task gradients, others " +
                             std::to_string(tasks));
    }
    if (parameter->row_sparse && parameter->touched_row_capacity() != per_task.dim(1)) {
      throw std::logic_error("gradient surgery: table '" + parameter->name + "' has room for " +
                             std::to_string(parameter->touched_row_capacity()) +
                             " touched rows but per-task gradients for " +
                             std::to_string(per_task.dim(1)));
    }
  }
  if (tasks == 0) {
    gram_.clear();
    weights_.clear();
    return weights_;
  }
  // The per-parameter Gram matrices add up to that of the concatenation. They are summed on the
  // device in parameter order and read once: K * K numbers per step, the only host read of the
  // surgery (the weights are solved on the host).
  const Shape gram_shape{tasks, tasks};
  if (device_gram_.defined() && device_gram_.shape() == gram_shape &&
      device_gram_.device() == ctx_.device) {
    device_gram_.zero_();
  } else {
    device_gram_ = Tensor::zeros(gram_shape, DType::kFloat64, ctx_.device);
  }
  gram_from_backward_ = 0;
  for (const Parameter* parameter : parameters) {
    const bool from_backward =
        parameter->value.dtype() == DType::kFloat32
            ? accumulate_gram<float>(ctx_, *parameter, tasks, device_gram_.data<double>())
            : accumulate_gram<double>(ctx_, *parameter, tasks, device_gram_.data<double>());
    if (from_backward) ++gram_from_backward_;
  }
  gram_.assign(static_cast<std::size_t>(tasks * tasks), 0.0);
  kernels::read_task_gram(ctx_, device_gram_.data<double>(), tasks, gram_.data());
  if (options_.method == SurgeryMethod::kPcgrad) {
    kernels::PcgradOptions step_options = options_.pcgrad;
    step_options.seed += static_cast<std::uint64_t>(steps_);
    weights_ = kernels::pcgrad_weights(gram_, tasks, step_options);
  } else {
    weights_ = kernels::cagrad_solve(gram_, tasks, options_.cagrad).weights;
  }
  for (Parameter* parameter : parameters) {
    if (parameter->value.dtype() == DType::kFloat32) {
      write_combined<float>(ctx_, *parameter, tasks, weights_);
    } else {
      write_combined<double>(ctx_, *parameter, tasks, weights_);
    }
  }
  ++steps_;
  return weights_;
}

const std::vector<double>& GradientSurgery::apply(ParameterStore& store,
                                                  const std::vector<std::string>& groups) {
  std::vector<Parameter*> parameters;
  for (const auto& group : groups) {
    for (Parameter* parameter : store.group(group)) parameters.push_back(parameter);
  }
  return apply(parameters);
}

}  // namespace drgrad::engine
