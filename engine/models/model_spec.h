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

// Split towers and the personalized gate of DRGrad (../shared/DRGRAD.md, "Model structure").
struct SplitSpec {
  bool enabled = false;         // split the primary task into T' (own view) and T'' (on v_s)
  int primary_task = 0;         // index into ModelSpec::tasks
  bool aux_read_shared = true;  // auxiliary towers read v_s (paper) or their own gate output
  std::vector<std::string> personal_slots;  // personalized gate over these slots (empty: off)
  bool stop_personal_gradient = true;       // PPNet: no gradient from the gate into e_p
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
  SplitSpec split;

  // The backbone must also produce the shared representation v_s (split towers, or towers or a
  // personalized gate that read it).
  bool needs_shared_representation() const { return split.enabled; }

  // Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
};

}  // namespace drgrad::engine
