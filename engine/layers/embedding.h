// Embedding bags over the sparse slots of a batch, and the feature input that concatenates the
// dense block with every slot's pooled embedding into the backbone's input matrix.
#pragma once

#include <string>
#include <vector>

#include "engine/layers/layer_builder.h"
#include "io/data/batch.h"
#include "kernels/embedding/embedding_bag.h"

namespace drgrad::engine {

// What to do with an id outside [0, vocabulary_size).
enum class OutOfRange { kError, kHash };

// How the backward pass finds each touched row's occurrences (config model.embedding_backward;
// docs/gpu.md, "Embedding backward plan"):
// kHostPlan: sorted on the host per batch and uploaded with the ids (the default).
// kDevicePlan: built where the ids are by kernels/embedding/embedding_plan.h (CUB on CUDA, the
//   CPU twin on the CPU); same order, same gradient bits as kHostPlan.
// kFastNondeterministic: the device plan, then atomic additions per id position
//   (embedding_bag_backward_atomic); on CUDA the last bits may vary from run to run.
enum class EmbeddingBackward { kHostPlan, kDevicePlan, kFastNondeterministic };

struct EmbeddingSlotSpec {
  std::string name;
  std::int64_t vocabulary_size = 0;
  std::int64_t dim = 8;
  kernels::Pooling pooling = kernels::Pooling::kSum;
  OutOfRange out_of_range = OutOfRange::kError;
  EmbeddingBackward backward = EmbeddingBackward::kHostPlan;
};

// Thrown for ids that a slot cannot place; the message names the slot, sample and id.
class SparseIdError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Row of the table for `id`: the id itself when inside the vocabulary, otherwise (hash mode) a
// 64-bit mix of the id modulo the vocabulary size. Exposed for tests.
std::int64_t hashed_row(std::int64_t id, std::int64_t vocabulary_size);

template <typename T>
class EmbeddingBag {
 public:
  // Registers "embeddings/<slot>" [vocabulary, dim] with row-sparse gradients, initialised
  // uniformly in [-0.05, 0.05].
  EmbeddingBag(LayerBuilder& builder, const EmbeddingSlotSpec& spec);

  // Pools the bags of `column` into columns [column_offset, column_offset + dim) of out
  // ([batch, out.dim(1)]): stage then forward, through buffers of its own.
  void forward(const io::SparseColumn& column, std::int64_t batch, Tensor& out,
               std::int64_t column_offset);
  // The host half of the forward pass: checks and maps the ids of `column` to table rows and
  // uploads the rows and the bag offsets into *rows [ids] and *offsets [batch + 1] on `device`,
  // in place when they already have those shapes (so that a captured step keeps reading the same
  // buffers). With the host plan it also builds the batch's backward plan, so the next forward
  // must be of this batch.
  void stage(const io::SparseColumn& column, std::int64_t batch, Device device, Tensor* rows,
             Tensor* offsets);
  // The device half: pools the bags of the staged batch into columns
  // [column_offset, column_offset + dim) of out ([batch, out.dim(1)]), and builds a device plan.
  void forward(const Tensor& rows, const Tensor& offsets, std::int64_t batch, Tensor& out,
               std::int64_t column_offset);
  // Reads the same columns of d_out and sets the table's touched rows and their gradients
  // (Parameter::touched_rows_device and friends), without reading anything back from the device.
  void backward(const Tensor& d_out, std::int64_t column_offset);
  // Per-task backward for K upstream gradients ([K, batch, out.dim(1)], one per task) through the
  // same occurrence plan: sets the table's touched rows (as backward does) and
  // task_gradients = [K, capacity, dim], row u of task k being the gradient of the u-th touched
  // row (rows past the count zero). Parameter::gradient is set to zeros [capacity, dim] so that
  // it stays consistent with the touched rows until a multi-task strategy writes the combined
  // rows.
  void backward_stacked(const Tensor& d_out_stacked, std::int64_t column_offset);

  const EmbeddingSlotSpec& spec() const { return spec_; }
  Parameter& table() { return *table_; }

 private:
  // The backward plan of the batch whose table rows are `rows` (host) and, for the device plan,
  // rows_ and offsets_ (already on the device).
  void build_host_plan(const std::vector<std::int64_t>& rows,
                       const std::vector<std::int64_t>& offsets, std::int64_t batch, Device device);
  void build_device_plan(Device device);
  // Puts the current batch's touched rows and their count on the device (the host plan uploads
  // them in one copy at the first backward of the batch; a device plan already has them there)
  // and returns the capacity, the number of gradient rows a backward writes: the distinct rows
  // (host plan) or the batch's ids (device plan, whose count is never read on the host).
  std::int64_t prepare_touched_rows();
  // A [rows..., capacity, dim] gradient buffer for the configured backward: zero-filled where the
  // backward leaves the rows past the device count untouched.
  Tensor row_gradient_buffer(Shape shape, Device device) const;
  // Writes the [capacity, dim] gradient of one upstream (d_out points at this slot's first
  // column, rows `width` apart) by the configured backward.
  void write_row_gradients(const T* d_out, std::int64_t width, std::int64_t capacity,
                           T* row_gradients);
  // Hands the batch's touched rows (device tensors, and the host copy with the host plan) to the
  // table's Parameter.
  void publish_touched_rows();

  kernels::Context ctx_;
  EmbeddingSlotSpec spec_;
  Parameter* table_;
  // Per-batch plan: table row of every id, the bag offsets, and for every distinct row the
  // samples it occurs in (so that the deterministic backward needs no atomics). Host plan: built
  // on the host, unique_rows_ filled at once, uploaded with its count by prepare_touched_rows.
  // Device plan: arrays sized for all ids distinct, num_distinct_ [1] on the device; unique_rows_
  // stays empty (nothing is read back).
  std::int64_t batch_ = 0;
  std::int64_t num_ids_ = 0;
  bool touched_rows_resolved_ = false;
  std::vector<std::int64_t> unique_rows_;
  Tensor rows_, offsets_, occurrence_offsets_, occurrence_samples_;
  Tensor staged_rows_, staged_offsets_;  // the convenience forward's buffers
  Tensor distinct_rows_, num_distinct_, distinct_index_of_position_, touched_rows_device_;
};

// Dense features plus every slot's pooled embedding, side by side:
// [batch, num_dense + sum of slot dims].
// One batch's inputs in the model's device memory, as the forward pass reads them. Staging (host
// checks, id mapping, uploads) is apart from the forward pass so that a training step captured in
// a CUDA graph reads fixed buffers, which the host refills before every replay.
struct StagedInput {
  std::int64_t batch = 0;
  Tensor dense;                 // [batch, num_dense]; undefined without dense features
  std::vector<Tensor> rows;     // per sparse slot: the table row of every id [ids]
  std::vector<Tensor> offsets;  // per sparse slot: bag offsets [batch + 1]
};

template <typename T>
class FeatureInput {
 public:
  FeatureInput(LayerBuilder& builder, std::int64_t num_dense,
               const std::vector<EmbeddingSlotSpec>& slots);

  // stage then forward, through buffers of its own.
  Tensor forward(const io::Batch& batch);
  // Checks the batch (slot count, finite dense values, ids in range) and uploads it into `into`,
  // reusing its buffers where the shapes match.
  void stage(const io::Batch& batch, StagedInput* into);
  // The [batch, out_features()] input matrix of a staged batch: dense block, then every slot's
  // pooled embedding.
  Tensor forward(const StagedInput& staged);
  void backward(const Tensor& d_input);
  // d_input_stacked [K, batch, out_features()]: every slot's EmbeddingBag::backward_stacked.
  void backward_stacked(const Tensor& d_input_stacked);
  std::int64_t out_features() const { return out_features_; }
  std::vector<EmbeddingBag<T>>& slots() { return slots_; }
  // First column of slot `name` in the input matrix; throws std::invalid_argument if unknown.
  std::int64_t column_of(const std::string& name) const;

 private:
  kernels::Context ctx_;
  std::int64_t num_dense_;
  std::int64_t out_features_;
  std::vector<EmbeddingBag<T>> slots_;
  std::vector<std::int64_t> slot_offsets_;
  StagedInput staged_;  // forward(batch)'s buffers
};

}  // namespace drgrad::engine
