// Allocation and checking of the per-task gradient buffers.
#include "engine/multitask/task_gradients.h"

#include <stdexcept>

namespace drgrad::engine {

void zero_task_gradients(const std::vector<Parameter*>& parameters, std::int64_t tasks,
                         TaskGram gram) {
  if (tasks <= 0) {
    throw std::invalid_argument("per-task gradients need at least one task, got " +
                                std::to_string(tasks));
  }
  for (Parameter* parameter : parameters) {
    parameter->task_gram_current = false;
    if (parameter->row_sparse) {
      parameter->task_gradients = Tensor();
      parameter->task_gram = Tensor();
      continue;
    }
    const Shape gram_shape{tasks, tasks};
    if (gram == TaskGram::kNone) {
      parameter->task_gram = Tensor();
    } else if (parameter->task_gram.defined() && parameter->task_gram.shape() == gram_shape) {
      parameter->task_gram.zero_();
    } else {
      parameter->task_gram = Tensor::zeros(gram_shape, DType::kFloat64, parameter->value.device());
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

void zero_task_gradients(ParameterStore& store, const std::string& group, std::int64_t tasks,
                         TaskGram gram) {
  zero_task_gradients(store.group(group), tasks, gram);
}

void release_task_gradients(const std::vector<Parameter*>& parameters) {
  for (Parameter* parameter : parameters) {
    parameter->task_gradients = Tensor();
    parameter->task_gram = Tensor();
    parameter->task_gram_current = false;
  }
}

Tensor& dense_task_gradients(Parameter& parameter, std::int64_t tasks) {
  const Shape expected{tasks, parameter.value.numel()};
  if (!parameter.task_gradients.defined() || parameter.task_gradients.shape() != expected) {
    throw std::logic_error("parameter '" + parameter.name + "' has no per-task gradient buffer " +
                           shape_to_string(expected) +
                           "; call zero_task_gradients with the same task count before "
                           "backward_stacked");
  }
  parameter.task_gram_current = false;
  return parameter.task_gradients;
}

double* task_gram_target(Parameter& parameter, std::int64_t tasks) {
  if (parameter.row_sparse || !parameter.task_gram.defined() ||
      parameter.task_gram.shape() != Shape{tasks, tasks}) {
    return nullptr;
  }
  return parameter.task_gram.data<double>();
}

void mark_task_gram_current(Parameter& parameter) {
  parameter.task_gram_current = true;
}

bool has_current_task_gram(const Parameter& parameter, std::int64_t tasks) {
  return parameter.task_gram_current && !parameter.row_sparse && parameter.task_gram.defined() &&
         parameter.task_gram.shape() == Shape{tasks, tasks} && parameter.task_gradients.defined() &&
         parameter.task_gradients.dim(0) == tasks;
}

}  // namespace drgrad::engine
