// Per-task gradients of shared parameters, filled by the layers' stacked backward passes
// (backward_stacked): one gradient per task from a single backward through the shared part.
// Memory: tasks x the parameters' element count (row-sparse tables: tasks x touched rows x dim).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/parameter_store.h"

namespace drgrad::engine {

// Prepares Parameter::task_gradients for a stacked backward with `tasks` upstream gradients:
// dense parameters get a zeroed [tasks, numel] tensor (reused when the shape already fits);
// row-sparse parameters are cleared, because their layer's stacked backward sets them together
// with touched_rows. Call once per step before the stacked backward, like zero_gradients().
void zero_task_gradients(const std::vector<Parameter*>& parameters, std::int64_t tasks);
void zero_task_gradients(ParameterStore& store, const std::string& group, std::int64_t tasks);

// Drops the per-task buffers (frees tasks x numel memory when a strategy no longer needs them).
void release_task_gradients(const std::vector<Parameter*>& parameters);

// The [tasks, numel] per-task gradient of a dense parameter, for a layer's stacked backward to
// accumulate into. Throws std::logic_error naming the parameter when zero_task_gradients was not
// called for this task count.
Tensor& dense_task_gradients(Parameter& parameter, std::int64_t tasks);

}  // namespace drgrad::engine
