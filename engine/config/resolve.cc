// Matching the configured tasks and slot overrides against the schema of the data.
#include <algorithm>

#include "engine/config/config.h"

namespace drgrad::engine {

namespace {
std::string list_or_none(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
  return out.empty() ? "(none)" : out;
}
}  // namespace

std::vector<ResolvedTask> resolve_tasks(const Config& config, const io::Schema& schema) {
  std::vector<ResolvedTask> tasks;
  if (config.tasks.empty()) {
    if (schema.labels.empty()) {
      throw ConfigError("the data has no label columns (" + schema.describe() +
                        "), so there is no task to train; use data with labels");
    }
    for (std::size_t i = 0; i < schema.labels.size(); ++i) {
      ResolvedTask task;
      task.config.name = schema.labels[i];
      task.config.label = schema.labels[i];
      task.config.type = config.data.binary_labels ? TaskType::kBinary : TaskType::kRegression;
      task.label_index = static_cast<int>(i);
      tasks.push_back(task);
    }
    return tasks;
  }
  for (std::size_t i = 0; i < config.tasks.size(); ++i) {
    ResolvedTask task;
    task.config = config.tasks[i];
    if (task.config.label.empty()) task.config.label = task.config.name;
    const auto found = std::find(schema.labels.begin(), schema.labels.end(), task.config.label);
    if (found == schema.labels.end()) {
      throw ConfigError("tasks." + std::to_string(i) + " ('" + task.config.name +
                        "') reads label '" + task.config.label +
                        "', which the data does not have; its labels are " +
                        list_or_none(schema.labels) + ". Set tasks." + std::to_string(i) +
                        ".label to one of them");
    }
    task.label_index = static_cast<int>(found - schema.labels.begin());
    tasks.push_back(task);
  }
  return tasks;
}

std::vector<EmbeddingSlotSpec> resolve_slots(const Config& config, const io::Schema& schema) {
  std::vector<std::string> slot_names;
  for (const auto& slot : schema.sparse_slots) slot_names.push_back(slot.name);
  for (std::size_t i = 0; i < config.features.slots.size(); ++i) {
    const std::string& name = config.features.slots[i].name;
    if (std::find(slot_names.begin(), slot_names.end(), name) == slot_names.end()) {
      throw ConfigError("features.slot." + std::to_string(i) + " overrides slot '" + name +
                        "', which the data does not have; its sparse slots are " +
                        list_or_none(slot_names));
    }
  }
  std::vector<EmbeddingSlotSpec> specs;
  for (const auto& slot : schema.sparse_slots) {
    EmbeddingSlotSpec spec;
    spec.name = slot.name;
    spec.vocabulary_size = slot.vocabulary_size;
    spec.dim = config.features.embedding_dim;
    spec.pooling = config.features.pooling;
    spec.out_of_range = config.features.out_of_range;
    spec.backward = config.model.embedding_backward;
    const auto override_of =
        std::find_if(config.features.slots.begin(), config.features.slots.end(),
                     [&slot](const SlotConfig& candidate) { return candidate.name == slot.name; });
    if (override_of != config.features.slots.end()) {
      spec.vocabulary_size = override_of->vocabulary_size.value_or(spec.vocabulary_size);
      spec.dim = override_of->embedding_dim.value_or(spec.dim);
      spec.pooling = override_of->pooling.value_or(spec.pooling);
      spec.out_of_range = override_of->out_of_range.value_or(spec.out_of_range);
    }
    if (spec.vocabulary_size <= 0) {
      throw ConfigError("sparse slot '" + slot.name +
                        "' has no known vocabulary size (the data does not record one); set it "
                        "in the config: [[features.slot]] name = \"" +
                        slot.name + "\" vocabulary_size = N");
    }
    specs.push_back(spec);
  }
  return specs;
}

}  // namespace drgrad::engine
