// The shape of a multi-task model: inputs, tasks, backbone and towers. The trainer fills it from
// the config; tests build it directly.
#pragma once

#include <string>
#include <vector>

#include "engine/layers/embedding.h"
#include "kernels/activation/activation.h"

namespace drgrad::engine {

enum class BackboneKind { kSharedBottom, kMmoe, kPle };
enum class TaskType { kBinary, kRegression };

BackboneKind parse_backbone(const std::string& name);
const char* backbone_name(BackboneKind kind);

struct TaskSpec {
  std::string name;
  int label_index = 0;  // column of io::Batch::labels
  TaskType type = TaskType::kBinary;
  double loss_weight = 1.0;
  double positive_weight = 1.0;  // binary tasks: weight of positive samples in the loss
};

struct ModelSpec {
  std::int64_t num_dense = 0;
  std::vector<EmbeddingSlotSpec> slots;
  std::vector<TaskSpec> tasks;
  BackboneKind backbone = BackboneKind::kMmoe;
  kernels::Activation activation = kernels::Activation::kRelu;
  std::vector<std::int64_t> bottom_units{128, 64};  // shared-bottom
  std::int64_t num_experts = 4;                     // mmoe
  std::vector<std::int64_t> expert_units{64, 32};   // mmoe and ple
  std::int64_t ple_levels = 2;
  std::int64_t task_experts = 1;              // ple: experts owned by each task, per level
  std::int64_t shared_experts = 1;            // ple: shared experts per level
  std::vector<std::int64_t> tower_units{32};  // hidden units; a 1-unit logit layer follows

  // Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
};

}  // namespace drgrad::engine
