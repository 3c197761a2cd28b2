// The named store of every trainable parameter, with its gradient. Parameters belong to a group
// ("embeddings", "backbone", "tower/<task>") so that multi-task strategies can find, say, the
// gradient of task k's tower by name. Embedding tables carry sparse gradients: only the rows a
// batch touched, listed in touched_rows with one gradient row each.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor/tensor.h"

namespace drgrad::engine {

struct Parameter {
  std::string name;
  std::string group;
  Tensor value;
  // Dense parameters: same shape as value. Sparse (row) parameters: [touched rows, dim].
  Tensor gradient;
  bool row_sparse = false;
  std::vector<std::int64_t> touched_rows;  // sorted, unique; host copy
  Tensor touched_rows_device;              // the same rows (int64) on the parameter's device
  // Per-task gradients from a stacked backward (engine/multitask): dense [tasks, numel]; row-sparse
  // [tasks, touched rows, dim]. Undefined unless per-task gradients were requested.
  Tensor task_gradients;
  // The K x K Gram matrix (float64, on the parameter's device) of the rows of task_gradients,
  // computed by a stacked backward on the way when zero_task_gradients asked for it
  // (engine/multitask/task_gradients.h). It describes task_gradients only while
  // task_gram_current is true: any writer that does not update it clears the flag.
  Tensor task_gram;
  bool task_gram_current = false;
};

class ParameterStore {
 public:
  explicit ParameterStore(DType dtype = DType::kFloat32, Device device = Device::cpu())
      : dtype_(dtype), device_(device) {}

  // Registers a parameter initialised from host values; names must be unique.
  template <typename T>
  Parameter& add(const std::string& name, const std::string& group, Shape shape,
                 const std::vector<T>& initial_values, bool row_sparse = false);

  Parameter& get(const std::string& name);
  const Parameter& get(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Registration order, which is also the checkpoint order.
  const std::vector<std::unique_ptr<Parameter>>& all() const { return parameters_; }
  std::vector<Parameter*> group(const std::string& group_name) const;
  std::vector<std::string> group_names() const;

  // Zeroes dense gradients and drops the sparse rows of the previous step.
  void zero_gradients();
  std::int64_t total_elements() const;

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

 private:
  DType dtype_;
  Device device_;
  std::vector<std::unique_ptr<Parameter>> parameters_;
  std::map<std::string, Parameter*> index_;
};

}  // namespace drgrad::engine
