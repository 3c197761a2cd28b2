// Trainer: the step, the loop with progress and evaluation, checkpoints in the run directory.
#include "engine/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <utility>

#include "engine/core/log.h"
#include "engine/metrics/evaluation_accumulator.h"
#include "engine/train/checkpoint.h"
#include "io/util/atomic_file.h"
#include "kernels/core/memory.h"
#include "kernels/dense/gemm.h"

namespace drgrad::engine {

namespace fs = std::filesystem;

namespace {
std::string format_seconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long>(seconds + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%ldh%02ldm", total / 3600, total / 60 % 60);
  } else {
    std::snprintf(text, sizeof(text), "%ldm%02lds", total / 60, total % 60);
  }
  return text;
}

std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  std::ostringstream out;
  out << std::setprecision(8) << value;
  return out.str();
}
}  // namespace

Trainer::Trainer(const ModelSpec& model_spec, const OptimizerSpec& optimizer_spec,
                 const TrainingOptions& options, std::unique_ptr<BatchStream> train_data,
                 std::unique_ptr<BatchStream> eval_data)
    : model_spec_(model_spec),
      options_(options),
      stream_(options.device),
      ctx_{options.device, stream_.get(), options.matmul_precision},
      model_(model_spec, ctx_, options.seed),
      optimizer_(optimizer_spec, model_.parameters()),
      loss_(model_spec.tasks, ctx_),
      train_data_(std::move(train_data)),
      eval_data_(std::move(eval_data)),
      loss_sums_readback_(options.device, model_spec.tasks.size() * sizeof(float)),
      non_finite_readback_(options.device, sizeof(std::int64_t)) {
  if (!train_data_) throw std::invalid_argument("the trainer needs training data");
  // A captured update reads Adam's bias corrections from device memory, written before each step.
  if (options_.cuda_graph) optimizer_.keep_step_scalars_in_memory();
  kernels::set_cpu_blas_threads(options_.cpu_threads);
  if (options_.device.is_cpu() && options_.matmul_precision != kernels::MatmulPrecision::kFp32) {
    log_warning(std::string("training.matmul_precision = \"") +
                kernels::matmul_precision_name(options_.matmul_precision) +
                "\" applies to CUDA matrix products only; on the CPU they are computed in fp32");
  }
  // Streams start at epoch 0 when built. The step count is known unless only epochs of unknown
  // size (compressed TFRecord input) are asked for.
  const std::int64_t samples = train_data_->samples_per_epoch();
  if (options_.steps > 0) {
    total_steps_ = options_.steps;
  } else if (samples > 0) {
    total_steps_ = options_.epochs * ((samples + options_.batch_size - 1) / options_.batch_size);
  } else {
    total_steps_ = -1;
  }
}

void Trainer::issue_step(const io::Batch& batch) {
  // With training.cuda_graph: the graph of the batch's shape, to replay or to capture now; none
  // when the step runs eagerly.
  StepGraph* graph = options_.cuda_graph ? step_graph_for(batch) : nullptr;
  StagedInput& input = graph != nullptr ? graph->input : eager_input_;
  Tensor& labels = graph != nullptr ? graph->labels : eager_labels_;
  model_.stage(batch, &input);
  loss_.stage_labels(batch, &labels);
  // Adam's bias corrections of this step, read by the updates from device memory.
  if (options_.cuda_graph) optimizer_.upload_step_scalars(optimizer_.steps_taken() + 1);
  if (graph == nullptr) {
    run_step_body(input, labels);
  } else if (graph->graph.empty()) {
    capture_step(*graph, batch.size);
  } else {
    graph->graph.launch(stream_.get());
    // What the step's host side did while it was captured, done again for this replay: the
    // optimizer counts the step, and both loss readbacks were issued again by the graph.
    optimizer_.set_steps_taken(optimizer_.steps_taken() + 1);
    loss_sums_readback_.expect_copy();
    non_finite_readback_.expect_copy();
  }
  pending_step_ = step_ + 1;
  pending_batch_size_ = batch.size;
  ++step_;
  if (strategy_) strategy_->after_step(step_);
}

void Trainer::run_step_body(const StagedInput& input, const Tensor& labels) {
  model_.parameters().zero_gradients();
  const Tensor logits = model_.forward(input);
  Tensor d_logits;
  const LossResult result = loss_.compute(logits, labels, &d_logits, /*copy_losses_to_host=*/false);
  // The sums and the count leave for the host right behind the loss kernel, while the host goes
  // on issuing the backward pass and the updates (on the CPU the copies are done at once).
  loss_sums_readback_.start(result.task_loss_sums.data<float>(), result.task_loss_sums.bytes());
  non_finite_readback_.start(result.non_finite_losses.data<std::int64_t>(), sizeof(std::int64_t));
  // Every update of this step reads the count of non-finite sample losses on the device and
  // writes nothing when it is not zero: a bad batch is refused without the host looking.
  struct SkipFlagScope {
    Optimizer<float>& optimizer;
    ~SkipFlagScope() { optimizer.set_skip_flag(nullptr); }
  } skip_scope{optimizer_};
  optimizer_.set_skip_flag(result.non_finite_losses.data<std::int64_t>());
  if (strategy_ && strategy_->needs_per_task_gradients()) {
    model_.backward_per_task(
        d_logits, strategy_->needs_task_gram() ? TaskGram::kDuringBackward : TaskGram::kNone);
  } else {
    model_.backward(d_logits);
  }
  if (strategy_) {
    strategy_->after_backward_and_step(model_, optimizer_, step_ + 1);
  } else {
    optimizer_.step(model_.parameters());
  }
}

std::size_t Trainer::captured_step_graphs() const {
  std::size_t captured = 0;
  for (const auto& [shape, entry] : step_graphs_) captured += entry.graph.empty() ? 0 : 1;
  return captured;
}

void Trainer::check_cuda_graph_support() {
  if (graph_support_checked_) return;
  const char* fix = "; set training.cuda_graph = false";
  if (!ctx_.device.is_cuda()) {
    throw TrainingError(std::string("training.cuda_graph = true needs a CUDA device "
                                    "(training.device = \"cuda:0\"); steps on the CPU are not "
                                    "captured") +
                        fix);
  }
  for (const auto& slot : model_spec_.slots) {
    if (slot.backward == EmbeddingBackward::kHostPlan) {
      throw TrainingError(
          "training.cuda_graph = true needs model.embedding_backward = \"device_plan\" (or "
          "\"fast_nondeterministic\"): with \"host_plan\" the host sizes every step by the "
          "batch's distinct ids of slot '" +
          slot.name + "', which a captured step cannot follow" + fix);
    }
  }
  if (strategy_) {
    const std::string obstacle = strategy_->cuda_graph_obstacle();
    if (!obstacle.empty()) {
      throw TrainingError("training.cuda_graph = true cannot capture the steps of strategy '" +
                          std::string(strategy_->name()) + "': " + obstacle + fix +
                          " or use strategy none or drgrad");
    }
  }
  graph_support_checked_ = true;
}

Trainer::StepGraph* Trainer::step_graph_for(const io::Batch& batch) {
  check_cuda_graph_support();
  // The shape a captured step is fixed to: samples, dense values, labels and every slot's ids.
  std::vector<std::int64_t> shape{batch.size, static_cast<std::int64_t>(batch.dense.size()),
                                  static_cast<std::int64_t>(batch.labels.size())};
  for (const auto& column : batch.sparse) {
    shape.push_back(static_cast<std::int64_t>(column.ids.size()));
  }
  const auto found = step_graphs_.find(shape);
  if (found != step_graphs_.end()) return &found->second;
  // A shape seen before (so that its first-use work, such as matrix-product plans and library
  // workspaces, is done) is captured while there is room; others run eagerly.
  const bool seen_before = shapes_seen_.count(shape) != 0;
  if (seen_before && step_graphs_.size() < kMaxStepGraphs) {
    shapes_seen_.erase(shape);
    return &step_graphs_[shape];
  }
  if (seen_before && !graph_limit_reported_) {
    graph_limit_reported_ = true;
    log_warning("training.cuda_graph: " + std::to_string(kMaxStepGraphs) +
                " batch shapes are captured already; steps of other shapes run without a graph "
                "(sparse slots whose number of ids varies from batch to batch make most batches "
                "a new shape)");
  }
  if (shapes_seen_.size() > 256) shapes_seen_.clear();  // bounded: one-off shapes
  shapes_seen_.insert(shape);
  return nullptr;
}

void Trainer::capture_step(StepGraph& graph, std::int64_t batch_size) {
  // The segment tables are built inside the capture, in the graph's own memory (see
  // Optimizer::rebuild_tables_next_step).
  optimizer_.rebuild_tables_next_step();
  if (strategy_) strategy_->rebuild_tables_next_step();
  try {
    graph.graph = kernels::CudaGraph::capture(ctx_.device, stream_.get(),
                                              [&] { run_step_body(graph.input, graph.labels); });
  } catch (const std::exception& error) {
    // The step's host side ran part way without its device work: the run cannot go on.
    std::erase_if(step_graphs_, [&](const auto& entry) { return &entry.second == &graph; });
    throw TrainingError(std::string("could not capture the training step as a CUDA graph: ") +
                        error.what());
  }
  // The capture ran the step's host side (counts, readbacks marked pending) but none of its
  // device work: this launch is the step.
  graph.graph.launch(stream_.get());
  log_info("training.cuda_graph: captured the step for batches of " + std::to_string(batch_size) +
           " samples (" + std::to_string(graph.graph.node_count()) + " graph nodes, " +
           kernels::format_bytes(graph.graph.memory_bytes()) + " of graph memory)");
}

bool Trainer::pending_losses_ready() const {
  return loss_sums_readback_.ready() && non_finite_readback_.ready();
}

std::optional<std::vector<double>> Trainer::take_pending_losses() {
  if (pending_step_ == 0) return std::nullopt;
  const auto* sums = static_cast<const float*>(loss_sums_readback_.wait());
  const std::int64_t non_finite = *static_cast<const std::int64_t*>(non_finite_readback_.wait());
  const std::int64_t step = std::exchange(pending_step_, 0);
  const std::size_t num_tasks = model_spec_.tasks.size();
  std::vector<double> losses(num_tasks);
  for (std::size_t k = 0; k < num_tasks; ++k) {
    losses[k] = static_cast<double>(sums[k]) / static_cast<double>(pending_batch_size_);
  }
  std::size_t bad = 0;
  while (bad < num_tasks && std::isfinite(losses[bad])) ++bad;
  if (bad == num_tasks && non_finite == 0) return losses;
  // Sample losses are never negative, so a non-finite one makes its task's sum non-finite too and
  // `bad` names a task whenever the count is not zero.
  std::string what = "the loss of task '" + model_spec_.tasks[std::min(bad, num_tasks - 1)].name +
                     "' became " + std::to_string(losses[std::min(bad, num_tasks - 1)]) +
                     " at step " + std::to_string(step);
  if (non_finite > 0) {
    // Nothing changed on the device; the host's counts go back to before the step as well.
    step_ = step - 1;
    optimizer_.set_steps_taken(optimizer_.steps_taken() - 1);
    what += " (" + std::to_string(non_finite) + " of " +
            std::to_string(pending_batch_size_ * static_cast<std::int64_t>(num_tasks)) +
            " sample losses of the batch were not finite); the update of step " +
            std::to_string(step) +
            " was refused on the device, so no update was applied and no checkpoint written";
  } else {
    // Every sample loss was finite, so the device applied the update; only the float sum of the
    // batch overflowed.
    what += " (every sample loss was finite but their sum overflowed; the update of step " +
            std::to_string(step) + " was applied, and no checkpoint was written after it)";
  }
  throw TrainingError(what +
                      ". Lower optimizer.learning_rate, check the data for NaN or huge values, or "
                      "resume from the last checkpoint");
}

std::vector<double> Trainer::train_step(const io::Batch& batch) {
  const kernels::CurrentStreamGuard stream_guard(ctx_.device, stream_.get());
  take_pending_losses();  // a step fit() left unjudged is judged before the next one
  issue_step(batch);
  return *take_pending_losses();
}

Evaluation Trainer::fit() {
  const kernels::CurrentStreamGuard stream_guard(ctx_.device, stream_.get());
  const bool terminal = options_.show_progress && isatty(STDERR_FILENO);
  const std::int64_t total = total_steps_;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  std::int64_t window_samples = 0, total_samples = 0;
  std::vector<double> window_loss(model_spec_.tasks.size(), 0.0);
  std::int64_t window_steps = 0;
  // A step's losses reach the host while later work is issued; they are looked at (and a bad one
  // stops training) before the next step is issued, and before a progress line, an evaluation, a
  // checkpoint or the end. On the CPU they are there at once.
  auto take_losses = [&] {
    if (const auto losses = take_pending_losses()) {
      for (std::size_t k = 0; k < losses->size(); ++k) window_loss[k] += (*losses)[k];
      ++window_steps;
    }
  };
  while (total <= 0 || step_ < total) {
    // Judged before the next batch is taken, so a refused step leaves the data position right
    // after its own batch.
    take_losses();
    std::optional<io::Batch> batch = train_data_->next();
    if (!batch) {
      ++epoch_;
      if (options_.steps <= 0 && epoch_ >= options_.epochs) break;
      train_data_->start_epoch(epoch_);
      continue;
    }
    issue_step(*batch);
    if (pending_losses_ready()) take_losses();
    window_samples += batch->size;
    total_samples += batch->size;
    const auto now = std::chrono::steady_clock::now();
    const double window_seconds = std::chrono::duration<double>(now - window_start).count();
    const bool log_now = options_.log_every > 0 && step_ % options_.log_every == 0;
    if (options_.show_progress && (terminal ? window_seconds > 0.2 : log_now)) {
      take_losses();
      const double rate = window_samples / std::max(window_seconds, 1e-9);
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double eta = total > 0 ? elapsed / std::max<std::int64_t>(1, total_samples) *
                                         static_cast<double>((total - step_) * options_.batch_size)
                                   : -1;
      std::ostringstream line;
      line << options_.label << (options_.label.empty() ? "" : " ") << "step " << step_;
      if (total > 0) line << "/" << total;
      line << "  epoch " << epoch_ + 1 << "  " << std::fixed << std::setprecision(0) << rate
           << " samples/s  loss";
      for (std::size_t k = 0; k < window_loss.size(); ++k) {
        line << " " << model_spec_.tasks[k].name << "=" << std::setprecision(4)
             << window_loss[k] / window_steps;
      }
      line << "  ETA " << format_seconds(eta);
      if (terminal) {
        std::fprintf(stderr, "\r\033[K%s", line.str().c_str());
        std::fflush(stderr);
      } else {
        log_info(line.str());
      }
      std::fill(window_loss.begin(), window_loss.end(), 0.0);
      window_steps = 0;
      window_samples = 0;
      window_start = now;
    }
    if (options_.eval_every > 0 && step_ % options_.eval_every == 0 && eval_data_ &&
        (total <= 0 || step_ < total)) {
      take_losses();
      if (terminal) std::fprintf(stderr, "\r\033[K");
      const Evaluation evaluation = evaluate();
      record_evaluation(evaluation);
      std::ostringstream summary;
      summary << options_.label << (options_.label.empty() ? "" : " ") << "eval at step " << step_
              << ":";
      for (const auto& task : evaluation.tasks) {
        summary << " " << task.name << " " << (task.type == TaskType::kBinary ? "auc=" : "mse=")
                << std::setprecision(4) << (task.type == TaskType::kBinary ? task.auc : task.mse);
      }
      log_info(summary.str());
    }
    if (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0 &&
        options_.save_checkpoints && !options_.run_dir.empty()) {
      take_losses();
      save_run_checkpoint();
    }
  }
  take_losses();
  if (terminal) std::fprintf(stderr, "\r\033[K");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  samples_per_second_ = total_samples / std::max(seconds, 1e-9);
  if (options_.save_checkpoints && !options_.run_dir.empty()) save_run_checkpoint();
  Evaluation final_evaluation;
  if (eval_data_) {
    final_evaluation = evaluate();
    record_evaluation(final_evaluation);
  }
  return final_evaluation;
}

Evaluation Trainer::evaluate() {
  const kernels::CurrentStreamGuard stream_guard(ctx_.device, stream_.get());
  const auto start = std::chrono::steady_clock::now();
  Evaluation evaluation;
  evaluation.step = step_;
  if (!eval_data_) return evaluation;
  const std::size_t num_tasks = model_spec_.tasks.size();
  // Predictions and labels stay on the model's device; only the per-batch loss sums and, at the
  // end, a few numbers per task reach the host.
  EvaluationAccumulator accumulator(model_spec_.tasks, ctx_);
  accumulator.reserve(eval_data_->samples_per_epoch());  // -1 when unknown: grows as it goes
  std::vector<double> loss_sums(num_tasks, 0.0);
  std::int64_t samples = 0;
  // Each batch's loss sums go to one of two page-locked buffers behind its loss kernel and are
  // added on the host two batches later (when that buffer is needed again) or at the end, so the
  // host never waits for the batch it has just issued.
  struct InFlight {
    kernels::HostReadback sums;
    std::int64_t batch_size = 0;
  };
  std::array<InFlight, 2> in_flight{
      InFlight{kernels::HostReadback(ctx_.device, num_tasks * sizeof(float))},
      InFlight{kernels::HostReadback(ctx_.device, num_tasks * sizeof(float))}};
  auto add_losses = [&](InFlight& slot) {
    if (!slot.sums.pending()) return;
    const auto* sums = static_cast<const float*>(slot.sums.wait());
    for (std::size_t k = 0; k < num_tasks; ++k) {
      // The arithmetic of LossResult::task_losses times the batch size, as before.
      const double mean = static_cast<double>(sums[k]) / static_cast<double>(slot.batch_size);
      loss_sums[k] += mean * slot.batch_size;
    }
  };
  std::size_t next_slot = 0;
  eval_data_->start_epoch(0);
  while (auto batch = eval_data_->next()) {
    const Tensor logits = model_.forward(*batch);
    const Tensor labels = loss_.upload_labels(*batch);
    const LossResult result = loss_.compute(logits, labels, nullptr, /*copy_losses_to_host=*/false);
    accumulator.add(result.predictions, labels);
    InFlight& slot = in_flight[next_slot];
    next_slot = 1 - next_slot;
    add_losses(slot);  // the batch before the previous one, in batch order
    slot.sums.start(result.task_loss_sums.data<float>(), result.task_loss_sums.bytes());
    slot.batch_size = batch->size;
    samples += batch->size;
  }
  add_losses(in_flight[next_slot]);  // the older of the last two batches first
  add_losses(in_flight[1 - next_slot]);
  const std::vector<TaskMetrics> metrics = accumulator.compute();
  for (std::size_t k = 0; k < num_tasks; ++k) {
    TaskEvaluation task;
    task.name = model_spec_.tasks[k].name;
    task.type = model_spec_.tasks[k].type;
    task.samples = samples;
    task.mean_loss = samples ? loss_sums[k] / samples : NAN;
    task.mse = metrics[k].mean_squared_error;
    if (task.type == TaskType::kBinary) {
      task.auc = metrics[k].auc;
      task.log_loss = metrics[k].log_loss;
    } else {
      task.auc = NAN;
      task.log_loss = NAN;
    }
    evaluation.tasks.push_back(task);
  }
  evaluation.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return evaluation;
}

void Trainer::record_evaluation(const Evaluation& evaluation) {
  history_.push_back(evaluation);
  if (options_.run_dir.empty()) return;
  fs::create_directories(options_.run_dir);
  std::ofstream out(fs::path(options_.run_dir) / "metrics.jsonl", std::ios::app);
  out << "{\"step\": " << evaluation.step << ", \"tasks\": [";
  for (std::size_t k = 0; k < evaluation.tasks.size(); ++k) {
    const auto& task = evaluation.tasks[k];
    out << (k ? ", " : "") << "{\"name\": \"" << task.name << "\", \"type\": \""
        << (task.type == TaskType::kBinary ? "binary" : "regression")
        << "\", \"samples\": " << task.samples << ", \"loss\": " << json_number(task.mean_loss)
        << ", \"auc\": " << json_number(task.auc)
        << ", \"log_loss\": " << json_number(task.log_loss)
        << ", \"mse\": " << json_number(task.mse) << "}";
  }
  out << "]}\n";
}

std::string Trainer::model_signature() const {
  std::string signature;
  for (const auto& parameter : model_.parameters().all()) {
    signature += parameter->name + shape_to_string(parameter->value.shape()) + ";";
  }
  return signature;
}

void Trainer::save_checkpoint(const std::string& path) const {
  const kernels::CurrentStreamGuard stream_guard(ctx_.device, stream_.get());
  CheckpointState state;
  state.step = step_;
  state.epoch = epoch_;
  state.optimizer_steps = optimizer_.steps_taken();
  state.data_position = train_data_->save_position();
  state.model_signature = model_signature();
  for (const auto& parameter : model_.parameters().all()) {
    state.tensors.emplace("param/" + parameter->name, parameter->value.to(Device::cpu()));
  }
  for (const auto& [name, tensor] : optimizer_.state()) {
    state.tensors.emplace("optim/" + name, tensor.to(Device::cpu()));
  }
  if (strategy_) strategy_->save_state(state.tensors);
  write_checkpoint(path, state);
}

void Trainer::restore_checkpoint(const std::string& path) {
  const kernels::CurrentStreamGuard stream_guard(ctx_.device, stream_.get());
  const CheckpointState state = read_checkpoint(path);
  if (state.model_signature != model_signature()) {
    throw CheckpointError("checkpoint " + path +
                          " was written for a different model (parameter names or shapes "
                          "differ); use the config it was trained with");
  }
  auto restore = [&](const std::string& key, Tensor& target) {
    const auto found = state.tensors.find(key);
    if (found == state.tensors.end()) {
      throw CheckpointError("checkpoint " + path + " lacks tensor '" + key +
                            "' (was it written with another optimizer?)");
    }
    target.copy_from(found->second);
  };
  for (const auto& parameter : model_.parameters().all()) {
    restore("param/" + parameter->name, parameter->value);
  }
  for (auto& [name, tensor] : optimizer_.state()) restore("optim/" + name, tensor);
  optimizer_.set_steps_taken(state.optimizer_steps);
  if (strategy_) strategy_->load_state(state.tensors, model_);
  step_ = state.step;
  epoch_ = state.epoch;
  train_data_->restore_position(state.data_position);
}

std::string Trainer::save_run_checkpoint() {
  const fs::path directory = fs::path(options_.run_dir) / "checkpoints";
  fs::create_directories(directory);
  char name[64];
  std::snprintf(name, sizeof(name), "step-%09lld.ckpt", static_cast<long long>(step_));
  const fs::path path = directory / name;
  save_checkpoint(path.string());
  io::write_file_atomically((directory / "latest").string(), std::string(name) + "\n");
  // Keep the newest keep_checkpoints files (names sort by step).
  std::vector<fs::path> existing;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (entry.path().extension() == ".ckpt") existing.push_back(entry.path());
  }
  std::sort(existing.begin(), existing.end());
  if (options_.keep_checkpoints > 0) {  // 0 keeps every checkpoint
    const auto keep = static_cast<std::size_t>(options_.keep_checkpoints);
    for (std::size_t i = 0; i + keep < existing.size(); ++i) fs::remove(existing[i]);
  }
  return path.string();
}

std::string format_evaluation(const Evaluation& evaluation) {
  std::ostringstream out;
  out << std::left << std::setw(16) << "task" << std::setw(12) << "type" << std::right
      << std::setw(9) << "samples" << std::setw(9) << "AUC" << std::setw(10) << "log-loss"
      << std::setw(10) << "MSE"
      << "\n";
  for (const auto& task : evaluation.tasks) {
    auto cell = [](double value, int width) {
      std::ostringstream text;
      text << std::setw(width);
      if (std::isfinite(value)) {
        text << std::fixed << std::setprecision(4) << value;
      } else {
        text << "-";
      }
      return text.str();
    };
    out << std::left << std::setw(16) << task.name << std::setw(12)
        << (task.type == TaskType::kBinary ? "binary" : "regression") << std::right << std::setw(9)
        << task.samples << cell(task.auc, 9) << cell(task.log_loss, 10) << cell(task.mse, 10)
        << "\n";
  }
  return out.str();
}

}  // namespace drgrad::engine
