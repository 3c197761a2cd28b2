// Shared-Bottom, MMoE and CGC/PLE backbones.
#include "engine/models/backbone.h"

#include <stdexcept>

#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

namespace {
// sum of tensors of one shape (the gradient of an input read by several consumers)
// Sum of the defined tensors among `parts` (all of one shape); at least one must be defined.
template <typename T>
Tensor sum_tensors(const kernels::Context& ctx, const std::vector<Tensor>& parts) {
  Tensor total;
  for (const Tensor& part : parts) {
    if (!part.defined()) continue;
    if (!total.defined()) {
      total = part.clone();
    } else {
      kernels::axpy<T>(ctx, total.numel(), T(1), part.data<T>(), total.data<T>());
    }
  }
  if (!total.defined()) throw std::logic_error("no gradient reached this part of the backbone");
  return total;
}

std::vector<int> range_of(std::int64_t begin, std::int64_t count) {
  std::vector<int> indices;
  for (std::int64_t i = 0; i < count; ++i) indices.push_back(static_cast<int>(begin + i));
  return indices;
}

// [K, batch, width] with row k = parts[k].
template <typename T>
Tensor stack_tasks(const std::vector<Tensor>& parts) {
  const Tensor& first = parts.front();
  Tensor stacked(Shape{static_cast<std::int64_t>(parts.size()), first.dim(0), first.dim(1)},
                 dtype_of<T>(), first.device());
  for (std::size_t k = 0; k < parts.size(); ++k) {
    stacked.narrow_first(static_cast<std::int64_t>(k), 1)
        .copy_from(parts[k].reshaped({1, first.dim(0), first.dim(1)}));
  }
  return stacked;
}

// Adds `part` ([batch, width], task `task`'s gradient) into row `task` of `stacked`.
template <typename T>
void add_into_row(const kernels::Context& ctx, Tensor& stacked, std::int64_t task,
                  const Tensor& part) {
  kernels::axpy<T>(ctx, part.numel(), T(1), part.data<T>(),
                   stacked.data<T>() + task * part.numel());
}

// Accumulates `part` into `total` (allocating it on first use).
template <typename T>
void accumulate(const kernels::Context& ctx, Tensor& total, const Tensor& part) {
  if (!total.defined()) {
    total = part.clone();
  } else {
    kernels::axpy<T>(ctx, total.numel(), T(1), part.data<T>(), total.data<T>());
  }
}
}  // namespace

template <typename T>
std::unique_ptr<Backbone<T>> make_backbone(LayerBuilder& builder, const ModelSpec& spec,
                                           std::int64_t in_features) {
  switch (spec.backbone) {
    case BackboneKind::kSharedBottom:
      return std::make_unique<SharedBottom<T>>(builder, spec, in_features);
    case BackboneKind::kMmoe:
      return std::make_unique<Mmoe<T>>(builder, spec, in_features);
    case BackboneKind::kPle:
      return std::make_unique<Ple<T>>(builder, spec, in_features);
  }
  throw std::invalid_argument("unknown backbone");
}

// --- Shared-Bottom ---------------------------------------------------------------------------

template <typename T>
SharedBottom<T>::SharedBottom(LayerBuilder& builder, const ModelSpec& spec,
                              std::int64_t in_features)
    : ctx_(builder.ctx),
      num_tasks_(spec.tasks.size()),
      with_shared_(spec.needs_shared_representation()),
      bottom_(builder, "backbone/bottom", "backbone", in_features, spec.bottom_units,
              spec.activation) {}

template <typename T>
BackboneOutput SharedBottom<T>::forward(const Tensor& x) {
  const Tensor bottom = bottom_.forward(x);
  return {std::vector<Tensor>(num_tasks_, bottom), with_shared_ ? bottom : Tensor()};
}

template <typename T>
Tensor SharedBottom<T>::backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) {
  std::vector<Tensor> parts = d_task;
  if (d_shared.defined()) parts.push_back(d_shared);
  return bottom_.backward(sum_tensors<T>(ctx_, parts));
}

template <typename T>
Tensor SharedBottom<T>::backward_stacked(const std::vector<Tensor>& d_task) {
  return bottom_.backward_stacked(stack_tasks<T>(d_task));
}

// --- MMoE ------------------------------------------------------------------------------------

template <typename T>
Mmoe<T>::Mmoe(LayerBuilder& builder, const ModelSpec& spec, std::int64_t in_features)
    : ctx_(builder.ctx),
      experts_(builder, "backbone/experts", "backbone", spec.num_experts, in_features,
               spec.expert_units, spec.activation) {
  gates_.reserve(spec.tasks.size());
  for (const auto& task : spec.tasks) {
    gates_.emplace_back(builder, "backbone/gate/" + task.name, "backbone", in_features,
                        range_of(0, spec.num_experts));
  }
  if (spec.needs_shared_representation()) {
    shared_gate_.emplace_back(builder, "backbone/gate/shared", "backbone", in_features,
                              range_of(0, spec.num_experts));
  }
}

template <typename T>
BackboneOutput Mmoe<T>::forward(const Tensor& x) {
  expert_outputs_ = experts_.forward(x);
  BackboneOutput output;
  for (auto& gate : gates_) output.tasks.push_back(gate.forward(x, expert_outputs_));
  if (!shared_gate_.empty()) output.shared = shared_gate_[0].forward(x, expert_outputs_);
  return output;
}

template <typename T>
Tensor Mmoe<T>::backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) {
  Tensor d_experts = Tensor::zeros(expert_outputs_.shape(), dtype_of<T>(), ctx_.device);
  std::vector<Tensor> d_inputs;
  for (std::size_t k = 0; k < gates_.size(); ++k) {
    if (d_task[k].defined()) d_inputs.push_back(gates_[k].backward(d_task[k], d_experts));
  }
  if (d_shared.defined() && !shared_gate_.empty()) {
    d_inputs.push_back(shared_gate_[0].backward(d_shared, d_experts));
  }
  d_inputs.push_back(experts_.backward(d_experts));
  return sum_tensors<T>(ctx_, d_inputs);
}

template <typename T>
Tensor Mmoe<T>::backward_stacked(const std::vector<Tensor>& d_task) {
  const auto tasks = static_cast<std::int64_t>(d_task.size());
  const Shape& expert_shape = expert_outputs_.shape();
  Tensor d_experts = Tensor::zeros({tasks, expert_shape[0], expert_shape[1], expert_shape[2]},
                                   dtype_of<T>(), ctx_.device);
  const std::int64_t batch = d_task.front().dim(0);
  Tensor dx = Tensor::zeros({tasks, batch, experts_.in_features()}, dtype_of<T>(), ctx_.device);
  for (std::int64_t k = 0; k < tasks; ++k) {
    // Only task k reads gate k: its ordinary backward, written to task k's rows.
    Tensor slice = d_experts.narrow_first(k, 1).reshaped(expert_shape);
    add_into_row<T>(ctx_, dx, k, gates_[k].backward_task(k, tasks, d_task[k], slice));
  }
  const Tensor from_experts = experts_.backward_stacked(d_experts);
  kernels::axpy<T>(ctx_, dx.numel(), T(1), from_experts.data<T>(), dx.data<T>());
  return dx;
}

// --- CGC / PLE -------------------------------------------------------------------------------

template <typename T>
Ple<T>::Ple(LayerBuilder& builder, const ModelSpec& spec, std::int64_t in_features)
    : ctx_(builder.ctx), num_tasks_(spec.tasks.size()), width_(spec.expert_units.back()) {
  const std::int64_t num_tasks = static_cast<std::int64_t>(num_tasks_);
  std::int64_t level_input = in_features;
  levels_.resize(static_cast<std::size_t>(spec.ple_levels));
  for (std::int64_t l = 0; l < spec.ple_levels; ++l) {
    Level& level = levels_[l];
    const std::string prefix = "backbone/level" + std::to_string(l);
    const bool top = l + 1 == spec.ple_levels;
    std::int64_t offset = 0;
    auto add_group = [&](const std::string& name, std::int64_t count, std::size_t input) {
      if (count == 0) return;
      level.groups.emplace_back(builder, prefix + "/" + name, "backbone", count, level_input,
                                spec.expert_units, spec.activation);
      level.group_input.push_back(input);
      level.group_offsets.push_back(offset);
      offset += count;
    };
    for (std::int64_t k = 0; k < num_tasks; ++k) {
      add_group("experts/" + spec.tasks[k].name, spec.task_experts, static_cast<std::size_t>(k));
    }
    const std::int64_t shared_begin = offset;
    add_group("experts/shared", spec.shared_experts, num_tasks_);
    level.total_experts = offset;
    for (std::int64_t k = 0; k < num_tasks; ++k) {
      std::vector<int> selected = range_of(k * spec.task_experts, spec.task_experts);
      for (const int index : range_of(shared_begin, spec.shared_experts)) {
        selected.push_back(index);
      }
      level.task_gates.emplace_back(builder, prefix + "/gate/" + spec.tasks[k].name, "backbone",
                                    level_input, selected);
    }
    if ((!top && spec.shared_experts > 0) || (top && spec.needs_shared_representation())) {
      level.shared_gate.emplace_back(builder, prefix + "/gate/shared", "backbone", level_input,
                                     range_of(0, level.total_experts));
    }
    level_input = spec.expert_units.back();
  }
}

template <typename T>
BackboneOutput Ple<T>::forward(const Tensor& x) {
  // inputs[k] for task k, inputs[K] for the shared path; all start from x.
  std::vector<Tensor> inputs(num_tasks_ + 1, x);
  for (auto& level : levels_) {
    const std::int64_t batch = x.dim(0);
    Tensor experts(Shape{level.total_experts, batch, width_}, dtype_of<T>(), ctx_.device);
    for (std::size_t g = 0; g < level.groups.size(); ++g) {
      Tensor out = level.groups[g].forward(inputs[level.group_input[g]]);
      experts.narrow_first(level.group_offsets[g], out.dim(0)).copy_from(out);
    }
    std::vector<Tensor> next(num_tasks_ + 1);
    for (std::size_t k = 0; k < num_tasks_; ++k) {
      next[k] = level.task_gates[k].forward(inputs[k], experts);
    }
    if (!level.shared_gate.empty()) {
      next[num_tasks_] = level.shared_gate[0].forward(inputs[num_tasks_], experts);
    }
    inputs = std::move(next);
  }
  BackboneOutput output;
  output.shared = inputs.back();  // the top level's shared gate, when there is one
  inputs.pop_back();
  output.tasks = std::move(inputs);
  return output;
}

template <typename T>
Tensor Ple<T>::backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) {
  std::vector<Tensor> d_outputs = d_task;
  d_outputs.push_back(d_shared);  // the top level's shared output (v_s), if used
  for (std::size_t l = levels_.size(); l-- > 0;) {
    Level& level = levels_[l];
    const std::int64_t batch = d_task.front().dim(0);
    Tensor d_experts =
        Tensor::zeros(Shape{level.total_experts, batch, width_}, dtype_of<T>(), ctx_.device);
    // Gradients of each input of this level, gathered from every consumer of that input.
    std::vector<std::vector<Tensor>> d_inputs(num_tasks_ + 1);
    for (std::size_t k = 0; k < num_tasks_; ++k) {
      if (d_outputs[k].defined()) {
        d_inputs[k].push_back(level.task_gates[k].backward(d_outputs[k], d_experts));
      }
    }
    if (!level.shared_gate.empty() && d_outputs[num_tasks_].defined()) {
      d_inputs[num_tasks_].push_back(
          level.shared_gate[0].backward(d_outputs[num_tasks_], d_experts));
    }
    for (std::size_t g = 0; g < level.groups.size(); ++g) {
      const Tensor d_group =
          d_experts.narrow_first(level.group_offsets[g], level.groups[g].num_experts());
      d_inputs[level.group_input[g]].push_back(level.groups[g].backward(d_group));
    }
    if (l == 0) {
      // Every input of the first level is x.
      std::vector<Tensor> all;
      for (auto& parts : d_inputs) all.insert(all.end(), parts.begin(), parts.end());
      return sum_tensors<T>(ctx_, all);
    }
    d_outputs.assign(num_tasks_ + 1, Tensor());
    for (std::size_t i = 0; i <= num_tasks_; ++i) {
      if (!d_inputs[i].empty()) d_outputs[i] = sum_tensors<T>(ctx_, d_inputs[i]);
    }
  }
  throw std::logic_error("PLE backbone has no levels");
}

template <typename T>
Tensor Ple<T>::backward_stacked(const std::vector<Tensor>& d_task) {
  const auto tasks = static_cast<std::int64_t>(d_task.size());
  const std::int64_t batch = d_task.front().dim(0);
  // Stacked gradients of each path's output ([tasks, batch, width]); at the top level the task
  // paths hold single-task gradients instead (only task k reads gate k there).
  std::vector<Tensor> d_outputs(num_tasks_ + 1);
  for (std::size_t l = levels_.size(); l-- > 0;) {
    Level& level = levels_[l];
    const bool top = l + 1 == levels_.size();
    const std::int64_t per_task = level.total_experts * batch * width_;
    Tensor d_experts =
        Tensor::zeros({tasks, level.total_experts, batch, width_}, dtype_of<T>(), ctx_.device);
    std::vector<Tensor> d_inputs(num_tasks_ + 1);
    for (std::size_t k = 0; k < num_tasks_; ++k) {
      if (top) {
        const auto task = static_cast<std::int64_t>(k);
        Tensor slice =
            d_experts.narrow_first(task, 1).reshaped({level.total_experts, batch, width_});
        const Tensor dx = level.task_gates[k].backward_task(task, tasks, d_task[k], slice);
        Tensor stacked = Tensor::zeros({tasks, batch, dx.dim(1)}, dtype_of<T>(), ctx_.device);
        add_into_row<T>(ctx_, stacked, task, dx);
        d_inputs[k] = stacked;
      } else if (d_outputs[k].defined()) {
        d_inputs[k] = level.task_gates[k].backward_stacked(d_outputs[k], d_experts);
      }
    }
    if (!level.shared_gate.empty() && d_outputs[num_tasks_].defined()) {
      accumulate<T>(ctx_, d_inputs[num_tasks_],
                    level.shared_gate[0].backward_stacked(d_outputs[num_tasks_], d_experts));
    }
    for (std::size_t g = 0; g < level.groups.size(); ++g) {
      // This group's experts for every task: [tasks, count, batch, width], gathered from the
      // level's stacked expert gradient.
      const std::int64_t count = level.groups[g].num_experts();
      const std::int64_t span = count * batch * width_;
      Tensor part({tasks, count, batch, width_}, dtype_of<T>(), ctx_.device);
      kernels::copy_rows<T>(ctx_, d_experts.data<T>() + level.group_offsets[g] * batch * width_,
                            per_task, part.data<T>(), span, tasks, span, false);
      accumulate<T>(ctx_, d_inputs[level.group_input[g]], level.groups[g].backward_stacked(part));
    }
    if (l == 0) {
      Tensor dx;
      for (const Tensor& part : d_inputs) {
        if (part.defined()) accumulate<T>(ctx_, dx, part);
      }
      return dx;
    }
    d_outputs = std::move(d_inputs);
  }
  throw std::logic_error("PLE backbone has no levels");
}

template class SharedBottom<float>;
template class SharedBottom<double>;
template class Mmoe<float>;
template class Mmoe<double>;
template class Ple<float>;
template class Ple<double>;
template std::unique_ptr<Backbone<float>> make_backbone<float>(LayerBuilder&, const ModelSpec&,
                                                               std::int64_t);
template std::unique_ptr<Backbone<double>> make_backbone<double>(LayerBuilder&, const ModelSpec&,
                                                                 std::int64_t);

}  // namespace drgrad::engine
