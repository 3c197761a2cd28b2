// Allocation and checking of the per-task gradient buffers.
#include "engine/multitask/task_gradients.h"

#include <stdexcept>

namespace drgrad::engine {

void zero_task_gradients(const std::vector<Parameter*>& parameters, std::int64_t tasks) {
  if (tasks <= 0) {
    throw std::invalid_argument("per-task gradients need at least one task, got " +
                                std::to_string(tasks));
  }
  for (Parameter* parameter : parameters) {
    if (parameter->row_sparse) {
      parameter->task_gradients = Tensor();
      continue;
    }
    const Shape shape{tasks, parameter->value.numel()};
    if (parameter->task_gradients.defined() && parameter->task_gradients.shape() == shape) {
      parameter->task_gradients.zero_();
    } else {
      parameter->task_gradients =
          Tensor::zeros(shape, parameter->value.dtype(), parameter->value.device());
    }
  }
}

void zero_task_gradients(ParameterStore& store, const std::string& group, std::int64_t tasks) {
  zero_task_gradients(store.group(group), tasks);
}

void release_task_gradients(const std::vector<Parameter*>& parameters) {
  for (Parameter* parameter : parameters) parameter->task_gradients = Tensor();
}

Tensor& dense_task_gradients(Parameter& parameter, std::int64_t tasks) {
  const Shape expected{tasks, parameter.value.numel()};
  if (!parameter.task_gradients.defined() || parameter.task_gradients.shape() != expected) {
    throw std::logic_error("parameter '" + parameter.name + "' has no per-task gradient buffer " +
                           shape_to_string(expected) +
                           "; call zero_task_gradients with the same task count before "
                           "backward_stacked");
  }
  return parameter.task_gradients;
}

}  // namespace drgrad::engine
