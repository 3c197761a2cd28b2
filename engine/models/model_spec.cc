// ModelSpec parsing helpers and validation.
#include "engine/models/model_spec.h"

#include <stdexcept>

#include "kernels/gate/gate.h"

namespace drgrad::engine {

BackboneKind parse_backbone(const std::string& name) {
  if (name == "shared_bottom") return BackboneKind::kSharedBottom;
  if (name == "mmoe") return BackboneKind::kMmoe;
  if (name == "ple" || name == "cgc") return BackboneKind::kPle;
  throw std::invalid_argument("unknown backbone '" + name + "': use shared_bottom, mmoe or ple");
}

const char* backbone_name(BackboneKind kind) {
  switch (kind) {
    case BackboneKind::kSharedBottom:
      return "shared_bottom";
    case BackboneKind::kMmoe:
      return "mmoe";
    case BackboneKind::kPle:
      return "ple";
  }
  return "?";
}

void ModelSpec::validate() const {
  auto positive = [](const std::vector<std::int64_t>& units, const char* field) {
    for (const auto unit : units) {
      if (unit <= 0) throw std::invalid_argument(std::string(field) + " must be positive");
    }
  };
  if (tasks.empty()) throw std::invalid_argument("the model needs at least one task");
  if (num_dense == 0 && slots.empty()) {
    throw std::invalid_argument("the model has no inputs: no dense features and no sparse slots");
  }
  positive(bottom_units, "model.bottom_units");
  positive(expert_units, "model.expert_units");
  positive(tower_units, "model.tower_units");
  if (backbone == BackboneKind::kSharedBottom && bottom_units.empty()) {
    throw std::invalid_argument("model.bottom_units is empty");
  }
  if (backbone != BackboneKind::kSharedBottom && expert_units.empty()) {
    throw std::invalid_argument("model.expert_units is empty");
  }
  const std::int64_t max_experts = kernels::ExpertSelection::kMaxExperts;
  if (backbone == BackboneKind::kMmoe && (num_experts < 1 || num_experts > max_experts)) {
    throw std::invalid_argument("model.num_experts must be in [1, 64]");
  }
  if (backbone == BackboneKind::kPle) {
    if (ple_levels < 1) throw std::invalid_argument("model.ple_levels must be at least 1");
    if (task_experts < 0 || shared_experts < 0 || task_experts + shared_experts < 1) {
      throw std::invalid_argument(
          "model.task_experts and model.shared_experts must be >= 0 and not both 0");
    }
    if (static_cast<std::int64_t>(tasks.size()) * task_experts + shared_experts > max_experts) {
      throw std::invalid_argument("a PLE level may hold at most 64 experts");
    }
  }
  for (const auto& slot : slots) {
    if (slot.dim <= 0) throw std::invalid_argument("slot '" + slot.name + "': dim must be > 0");
  }
  if (split.enabled) {
    if (split.primary_task < 0 || split.primary_task >= static_cast<int>(tasks.size())) {
      throw std::invalid_argument("the primary task index is outside the task list");
    }
    if (tasks.size() < 2) {
      throw std::invalid_argument("split towers need a primary and at least one auxiliary task");
    }
  } else if (!split.personal_slots.empty()) {
    throw std::invalid_argument("a personalized gate acts on v_s and needs split towers");
  }
  for (const auto& name : split.personal_slots) {
    bool found = false;
    for (const auto& slot : slots) found = found || slot.name == name;
    if (!found) {
      throw std::invalid_argument("personal slot '" + name + "' is not a sparse slot of the data");
    }
  }
}

}  // namespace drgrad::engine
