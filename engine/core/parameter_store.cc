// ParameterStore registration, lookup and gradient reset.
#include "engine/core/parameter_store.h"

#include <set>
#include <stdexcept>

namespace drgrad::engine {

template <typename T>
Parameter& ParameterStore::add(const std::string& name, const std::string& group, Shape shape,
                               const std::vector<T>& initial_values, bool row_sparse) {
  if (dtype_of<T>() != dtype_) {
    throw std::logic_error("parameter '" + name + "' initialised with the wrong precision");
  }
  if (contains(name)) throw std::logic_error("parameter '" + name + "' registered twice");
  auto parameter = std::make_unique<Parameter>();
  parameter->name = name;
  parameter->group = group;
  parameter->value = Tensor::from_vector<T>(shape, initial_values).to(device_);
  parameter->row_sparse = row_sparse;
  if (!row_sparse) parameter->gradient = Tensor::zeros(shape, dtype_, device_);
  index_[name] = parameter.get();
  parameters_.push_back(std::move(parameter));
  return *parameters_.back();
}
template Parameter& ParameterStore::add<float>(const std::string&, const std::string&, Shape,
                                               const std::vector<float>&, bool);
template Parameter& ParameterStore::add<double>(const std::string&, const std::string&, Shape,
                                                const std::vector<double>&, bool);

Parameter& ParameterStore::get(const std::string& name) {
  const auto found = index_.find(name);
  if (found == index_.end()) throw std::out_of_range("no parameter named '" + name + "'");
  return *found->second;
}

const Parameter& ParameterStore::get(const std::string& name) const {
  const auto found = index_.find(name);
  if (found == index_.end()) throw std::out_of_range("no parameter named '" + name + "'");
  return *found->second;
}

std::vector<Parameter*> ParameterStore::group(const std::string& group_name) const {
  std::vector<Parameter*> members;
  for (const auto& parameter : parameters_) {
    if (parameter->group == group_name) members.push_back(parameter.get());
  }
  return members;
}

std::vector<std::string> ParameterStore::group_names() const {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const auto& parameter : parameters_) {
    if (seen.insert(parameter->group).second) names.push_back(parameter->group);
  }
  return names;
}

std::vector<std::int64_t> Parameter::read_touched_rows() const {
  if (touched_rows_on_host) return touched_rows;
  if (!touched_rows_device.defined() || !touched_row_count_device.defined()) return {};
  const std::int64_t count = touched_row_count_device.to_vector<std::int64_t>().at(0);
  if (count == 0) return {};
  return touched_rows_device.narrow_first(0, count).to_vector<std::int64_t>();
}

void ParameterStore::zero_gradients() {
  for (auto& parameter : parameters_) {
    if (parameter->row_sparse) {
      parameter->touched_rows.clear();
      parameter->touched_rows_on_host = false;
      parameter->touched_rows_device = Tensor();
      parameter->touched_row_count_device = Tensor();
      parameter->gradient = Tensor();
    } else {
      parameter->gradient.zero_();
    }
  }
}

std::int64_t ParameterStore::total_elements() const {
  std::int64_t total = 0;
  for (const auto& parameter : parameters_) total += parameter->value.numel();
  return total;
}

}  // namespace drgrad::engine
