// The training loop: batches from a BatchStream, forward, multi-task loss, backward, optimizer
// step; evaluation every N steps and at the end; atomic checkpoints and exact resume; progress
// on the terminal (or plain lines in logs). Deterministic for a given seed on the CPU. On CUDA the
// trainer works on a stream of its own and does not wait for the device's losses inside a step.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/losses/multitask_loss.h"
#include "engine/models/multitask_model.h"
#include "engine/multitask/strategy.h"
#include "engine/optim/optimizer.h"
#include "engine/train/batch_stream.h"
#include "kernels/core/cuda_graph.h"
#include "kernels/core/stream.h"

namespace drgrad::engine {

struct TrainingOptions {
  std::int64_t batch_size = 512;  // as the training stream serves them (for step counts)
  std::int64_t epochs = 1;
  std::int64_t steps = 0;             // > 0: stop after this many steps instead of epochs
  std::int64_t eval_every = 0;        // 0: evaluate only at the end
  std::int64_t log_every = 50;        // progress lines when stderr is not a terminal
  std::int64_t checkpoint_every = 0;  // 0: only at the end
  std::uint64_t seed = 1;
  Device device;
  int cpu_threads = 1;  // BLAS threads for CPU products (0: all cores)
  // Precision of CUDA matrix products; the CPU computes in fp32 whatever it says.
  kernels::MatmulPrecision matmul_precision = kernels::MatmulPrecision::kFp32;
  // CUDA: capture the step once per batch shape (after one eager step of that shape) as a CUDA
  // graph and replay it; see docs/gpu.md "CUDA graphs". Refused on the CPU, with the host
  // embedding plan and with strategies that read back to the host.
  bool cuda_graph = false;
  std::string run_dir;  // empty: write nothing to disk
  bool save_checkpoints = true;
  int keep_checkpoints = 2;
  bool show_progress = true;
  std::string label;  // shown in progress lines (e.g. the model name)
};

struct TaskEvaluation {
  std::string name;
  TaskType type = TaskType::kBinary;
  std::int64_t samples = 0;
  double mean_loss = 0;
  double auc = 0;       // binary tasks
  double log_loss = 0;  // binary tasks
  double mse = 0;       // regression tasks (and, for binary tasks, the Brier score)
};

struct Evaluation {
  std::int64_t step = 0;
  std::vector<TaskEvaluation> tasks;
  double seconds = 0;
};

// Thrown when training cannot go on (NaN loss, wrong data); the message says what to change.
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Trainer {
 public:
  Trainer(const ModelSpec& model_spec, const OptimizerSpec& optimizer_spec,
          const TrainingOptions& options, std::unique_ptr<BatchStream> train_data,
          std::unique_ptr<BatchStream> eval_data);

  // Trains until the configured steps or epochs are done and returns the final evaluation
  // (empty when there is no evaluation data).
  Evaluation fit();
  Evaluation evaluate();

  // A multi-task strategy applied between backward and the optimizer step (none: plain sum of
  // the task losses' gradients).
  // Captured CUDA graphs hold the previous strategy's passes and memory: they are dropped.
  void set_strategy(std::unique_ptr<MultiTaskStrategy> strategy) {
    step_graphs_.clear();
    shapes_seen_.clear();
    graph_support_checked_ = false;
    strategy_ = std::move(strategy);
  }

  // One optimisation step on `batch`; waits for its losses and returns the per-task mean losses.
  // Throws TrainingError when one is not finite: the device then refused the step's update (no
  // parameter or optimizer state changed) and the step and optimizer counts stay as before it.
  // fit() does not wait like this: it looks at a step's losses when it next needs them.
  std::vector<double> train_step(const io::Batch& batch);

  void save_checkpoint(const std::string& path) const;
  // Restores parameters, optimizer state, step, epoch and data position.
  void restore_checkpoint(const std::string& path);
  // Saves into <run_dir>/checkpoints/step-N.ckpt, updates "latest", prunes old ones; returns
  // the path.
  std::string save_run_checkpoint();

  std::int64_t step() const { return step_; }
  std::int64_t total_steps() const { return total_steps_; }
  MultiTaskModel<float>& model() { return model_; }
  const Optimizer<float>& optimizer() const { return optimizer_; }
  const std::vector<Evaluation>& history() const { return history_; }
  double samples_per_second() const { return samples_per_second_; }
  // Batch shapes whose step has been captured as a CUDA graph (training.cuda_graph).
  std::size_t captured_step_graphs() const;

 private:
  ModelSpec model_spec_;
  TrainingOptions options_;
  // CUDA: the trainer's own stream, current on the calling thread while a public method runs and
  // the stream of ctx_. Created with default flags (a blocking stream), so that work still issued
  // on the legacy default stream, by code handed no stream, stays ordered with it both ways.
  // Declared before everything that holds device memory, so that it outlives it. On the CPU it
  // holds nothing.
  kernels::Stream stream_;
  kernels::Context ctx_;
  // CUDA graphs (options_.cuda_graph): for each batch shape seen twice (up to kMaxStepGraphs of
  // them), the staged inputs that its captured step reads and the graph. Declared before the
  // model, optimizer and strategy, whose tensors may live in a graph's memory, so that it goes
  // last (a graph's memory outlives it anyway while tensors still hold some).
  struct StepGraph {
    StagedInput input;
    Tensor labels;
    kernels::CudaGraph graph;
  };
  static constexpr std::size_t kMaxStepGraphs = 4;
  std::map<std::vector<std::int64_t>, StepGraph> step_graphs_;
  std::set<std::vector<std::int64_t>> shapes_seen_;  // seen once, not captured
  bool graph_support_checked_ = false;
  bool graph_limit_reported_ = false;
  MultiTaskModel<float> model_;
  Optimizer<float> optimizer_;
  MultiTaskLoss<float> loss_;
  std::unique_ptr<BatchStream> train_data_;
  std::unique_ptr<BatchStream> eval_data_;
  std::unique_ptr<MultiTaskStrategy> strategy_;
  std::int64_t step_ = 0;
  std::int64_t epoch_ = 0;
  std::int64_t total_steps_ = 0;
  double samples_per_second_ = 0;
  std::vector<Evaluation> history_;
  // The per-task loss sums and the count of non-finite sample losses of the last issued step, on
  // their way to the host (page-locked buffers on CUDA), and which step and batch size they are.
  kernels::HostReadback loss_sums_readback_;
  kernels::HostReadback non_finite_readback_;
  std::int64_t pending_step_ = 0;  // 0: no step's losses are waiting to be looked at
  std::int64_t pending_batch_size_ = 0;
  // The staged batch of steps that run without a graph.
  StagedInput eager_input_;
  Tensor eager_labels_;

  // Issues one step without waiting for the device: forward, loss (its sums start towards the
  // host), backward, and updates that the device skips when the loss counted a non-finite
  // sample loss.
  void issue_step(const io::Batch& batch);
  // The device work of a step on a staged batch (what a CUDA graph captures): forward, loss and
  // its readbacks, backward, updates. Leaves the step counts to the caller.
  void run_step_body(const StagedInput& input, const Tensor& labels);
  // With options_.cuda_graph: the graph of the batch's shape (captured already, or to capture
  // now: a shape seen before while fewer than kMaxStepGraphs are), or null for an eager step.
  StepGraph* step_graph_for(const io::Batch& batch);
  // Captures run_step_body on the graph's staged buffers and launches it (the step).
  void capture_step(StepGraph& graph, std::int64_t batch_size);
  // Throws TrainingError when this run cannot capture its steps (CPU, host embedding plan, a
  // strategy that reads back to the host).
  void check_cuda_graph_support();
  // The mean losses of the pending step (waiting for them if needed), or nothing when none is
  // pending. Throws TrainingError when one is not finite, after putting the step and optimizer
  // counts back to before the refused step.
  std::optional<std::vector<double>> take_pending_losses();
  bool pending_losses_ready() const;

  std::string model_signature() const;
  void record_evaluation(const Evaluation& evaluation);
};

// Prints a per-task metrics table ("task  type  samples  AUC  log-loss  MSE").
std::string format_evaluation(const Evaluation& evaluation);

}  // namespace drgrad::engine
