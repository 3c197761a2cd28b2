// The named store of every trainable parameter, with its gradient. Parameters belong to a group
// ("embeddings", "backbone", "tower/<task>") so that multi-task strategies can find, say, the
// gradient of task k's tower by name. Embedding tables carry sparse gradients: only the rows a
// batch touched, listed in touched_rows_device with one gradient row each.
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
  // Row-sparse parameters, set by the backward: the rows the batch touched, sorted and unique, on
  // the parameter's device. touched_rows_device holds capacity entries (the backward's bound: the
  // number of distinct rows with the host plan, the batch's id count with a device plan) of which
  // the first *touched_row_count_device are the rows; gradient is [capacity, dim], row u the
  // gradient of the u-th touched row, rows from the count on zero. Nothing here needs the count on
  // the host, so a device-built plan is never read back (the optimizer reads the count on the
  // device, kernels/optimizer/row_update.h).
  Tensor touched_rows_device;       // int64 [capacity]
  Tensor touched_row_count_device;  // int64 [1]
  // Host copy of the touched rows, kept only when the backward had them on the host anyway (the
  // host plan; touched_rows_on_host is then true). With a device plan it stays empty: use
  // read_touched_rows().
  std::vector<std::int64_t> touched_rows;
  bool touched_rows_on_host = false;
  // The touched rows on the host: the host copy when there is one, otherwise read from the device
  // (which waits for the backward that wrote them). Empty when the last backward touched nothing
  // or gradients were zeroed since.
  std::vector<std::int64_t> read_touched_rows() const;
  std::int64_t touched_row_capacity() const {
    return touched_rows_device.defined() ? touched_rows_device.numel() : 0;
  }
  // Per-task gradients from a stacked backward (engine/multitask): dense [tasks, numel]; row-sparse
  // [tasks, capacity, dim]. Undefined unless per-task gradients were requested.
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
