// Optimizers over a ParameterStore: SGD with momentum, Adam (decoupled weight decay) and Adagrad.
// Dense parameters update in full, all of them in one multi-tensor pass; embedding tables update
// only the rows the batch touched (lazy updates, kernels/optimizer/optimizer.h), all tables in one
// pass that reads each table's row count on the device (kernels/optimizer/row_update.h). The
// optimizer owns its state tensors and exposes them by name for checkpoints.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/parameter_store.h"
#include "kernels/optimizer/optimizer.h"
#include "kernels/optimizer/row_update.h"

namespace drgrad::engine {

enum class OptimizerKind { kSgd, kAdam, kAdagrad };
OptimizerKind parse_optimizer(const std::string& name);

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kAdam;
  double learning_rate = 1e-3;
  double momentum = 0.9;  // sgd
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  double weight_decay = 0.0;
  double initial_accumulator = 0.1;      // adagrad
  double embedding_learning_rate = 0.0;  // 0: same as learning_rate
};

template <typename T>
class Optimizer {
 public:
  Optimizer(const OptimizerSpec& spec, const ParameterStore& store);

  // One update of every parameter from its current gradient, except those marked with
  // skip_in_next_step (whose marks it then clears). The dense parameters go through one
  // kernels::fused_dense_update over a segment table that is built on the first step and rebuilt
  // only when the set of parameters or one of their arrays changes; the embedding tables' touched
  // rows through one kernels::fused_row_update over a table of their arrays (rebuilt when one
  // moves: the per-step gradient and row arrays usually do, which costs an upload of about 80
  // bytes per table but no wait), the row counts read on the device.
  void step(ParameterStore& store);

  // For a strategy that updates some dense parameters itself in a fused pass (DRGrad's routed
  // tower update), with the same arithmetic the next step() would apply:
  // the rule of the next step() for dense parameters (its learning rate, options and, for Adam,
  // the bias corrections of step steps_taken() + 1);
  kernels::UpdateRule next_dense_rule() const;
  // a parameter's state arrays in the order the rule reads them (velocity, first moment or
  // accumulator; Adam's second moment or null);
  std::pair<T*, T*> state_arrays(const Parameter& parameter);
  // and the mark that the parameter has had its update for the next step(), which then leaves
  // it alone (once).
  void skip_in_next_step(const Parameter& parameter) { skip_next_.insert(&parameter); }
  // A count in the parameters' device memory (or null) that every later update reads: when it is
  // non-zero as the update runs, the update writes nothing (weights and state stay as they were).
  // The trainer sets the loss's count of non-finite sample losses here, so that a bad batch is
  // refused on the device without the host reading anything. Passes that update parameters for
  // the optimizer (DRGrad's routed tower update) must honour skip_flag() too.
  void set_skip_flag(const std::int64_t* flag) { skip_flag_ = flag; }
  const std::int64_t* skip_flag() const { return skip_flag_; }
  // For CUDA graphs: from now on every update (this optimizer's and the rules it hands out) reads
  // the step-dependent scalars (Adam's bias corrections) from a small array in the parameters'
  // device memory instead of taking them by value, so that an update captured once follows the
  // step count on every replay. The caller then writes them before each step's updates with
  // upload_step_scalars(steps_taken() + 1), outside any captured work (an upload of 16 bytes on
  // the current stream). SGD and Adagrad have no such scalars; the array is kept all the same.
  void keep_step_scalars_in_memory();
  void upload_step_scalars(std::int64_t step);
  // Drops the cached segment tables, so that the next step() builds them afresh. Before a CUDA
  // graph capture: the tables are then built inside it, in the graph's own memory, and no later
  // rebuild (which frees the old table) can take a table from under a graph that reads it.
  void rebuild_tables_next_step() {
    dense_segments_.clear();
    dense_table_ = {};
    row_segments_.clear();
    row_table_ = {};
  }
  bool step_scalars_in_memory() const { return step_scalars_.defined(); }
  std::int64_t steps_taken() const { return steps_; }
  void set_steps_taken(std::int64_t steps) { steps_ = steps; }

  // "<parameter>/<slot>" -> state tensor (e.g. "tower/ctr/layer0/weight/first_moment").
  std::map<std::string, Tensor>& state() { return state_; }
  const std::map<std::string, Tensor>& state() const { return state_; }
  const OptimizerSpec& spec() const { return spec_; }

 private:
  OptimizerSpec spec_;
  std::int64_t steps_ = 0;
  std::map<std::string, Tensor> state_;
  std::set<const Parameter*> skip_next_;
  const std::int64_t* skip_flag_ = nullptr;
  // [first, second] bias corrections (double) where keep_step_scalars_in_memory() asked for them.
  Tensor step_scalars_;
  Device device_;
  // The dense segments of the last step and their table (device copy on CUDA).
  std::vector<kernels::DenseUpdateSegment<T>> dense_segments_;
  kernels::DenseUpdateTable<T> dense_table_;
  // The same for the embedding tables' touched rows.
  std::vector<kernels::RowUpdateSegment<T>> row_segments_;
  kernels::RowUpdateTable<T> row_table_;
  Tensor& state_of(const Parameter& parameter, const char* slot);
  kernels::UpdateRule rule_for(std::int64_t step, double learning_rate) const;
};

}  // namespace drgrad::engine
