// Per-task gradients of shared parameters, filled by the layers' stacked backward passes
// (backward_stacked): one gradient per task from a single backward through the shared part.
// Memory: tasks x the parameters' element count (row-sparse tables: tasks x capacity x dim, the
// capacity being the distinct rows with the host plan, the batch's ids with a device plan).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/parameter_store.h"

namespace drgrad::engine {

// Whether the stacked backward should also leave each dense parameter's K x K task Gram matrix
// in Parameter::task_gram (what PCGrad and CAGrad need), computed on the way by the layers that
// can (Linear: kernels::task_gradients_with_gram) so that the strategy need not read those
// gradients again. Parameters whose layer cannot are left with task_gram_current = false and
// the strategy computes theirs (GradientSurgery::apply).
enum class TaskGram { kNone, kDuringBackward };

// Prepares Parameter::task_gradients for a stacked backward with `tasks` upstream gradients:
// dense parameters get a zeroed [tasks, numel] tensor (reused when the shape already fits);
// row-sparse parameters are cleared, because their layer's stacked backward sets them together
// with the touched rows. With TaskGram::kDuringBackward dense parameters also get a zeroed
// Parameter::task_gram [tasks, tasks] (float64); with kNone it is released. Either way
// task_gram_current becomes false. Call once per step before the stacked backward, like
// zero_gradients().
void zero_task_gradients(const std::vector<Parameter*>& parameters, std::int64_t tasks,
                         TaskGram gram = TaskGram::kNone);
void zero_task_gradients(ParameterStore& store, const std::string& group, std::int64_t tasks,
                         TaskGram gram = TaskGram::kNone);

// Drops the per-task buffers (frees tasks x numel memory when a strategy no longer needs them).
void release_task_gradients(const std::vector<Parameter*>& parameters);

// The [tasks, numel] per-task gradient of a dense parameter, for a layer's stacked backward to
// accumulate into. Every writer goes through here: it marks the parameter's task Gram as no
// longer current (the caller is about to change the gradients). Throws std::logic_error naming
// the parameter when zero_task_gradients was not called for this task count.
Tensor& dense_task_gradients(Parameter& parameter, std::int64_t tasks);

// The parameter's [tasks, tasks] task Gram buffer (float64, on its device) when
// zero_task_gradients asked for TaskGram::kDuringBackward with this task count; nullptr
// otherwise. A layer that fills it with the Gram of the FINAL task_gradients (everything
// accumulated so far) then calls mark_task_gram_current.
double* task_gram_target(Parameter& parameter, std::int64_t tasks);
void mark_task_gram_current(Parameter& parameter);
// True when Parameter::task_gram holds the Gram matrix of the current task_gradients.
bool has_current_task_gram(const Parameter& parameter, std::int64_t tasks);

}  // namespace drgrad::engine
