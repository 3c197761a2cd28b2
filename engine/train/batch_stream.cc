// InMemoryBatchStream: per-epoch permutations and row gathering.
#include "engine/train/batch_stream.h"

#include <numeric>
#include <sstream>
#include <stdexcept>

#include "engine/core/random.h"

namespace drgrad::engine {

InMemoryBatchStream::InMemoryBatchStream(io::Schema schema, io::Batch data, std::int64_t batch_size,
                                         bool shuffle, std::uint64_t seed)
    : schema_(std::move(schema)),
      data_(std::move(data)),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed) {
  if (batch_size <= 0) throw std::invalid_argument("batch size must be positive");
  data_.validate(schema_);
  start_epoch(0);
}

void InMemoryBatchStream::start_epoch(std::int64_t epoch) {
  epoch_ = epoch;
  cursor_ = 0;
  order_.resize(static_cast<std::size_t>(data_.size));
  std::iota(order_.begin(), order_.end(), 0);
  if (shuffle_) {
    Random random(seed_ * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(epoch) + 1);
    for (std::int64_t i = data_.size - 1; i > 0; --i) {
      const auto j = static_cast<std::int64_t>(random.below(static_cast<std::uint64_t>(i + 1)));
      std::swap(order_[i], order_[j]);
    }
  }
}

std::optional<io::Batch> InMemoryBatchStream::next() {
  if (cursor_ >= data_.size) return std::nullopt;
  const std::int64_t count = std::min(batch_size_, data_.size - cursor_);
  io::Batch batch =
      io::gather_rows(data_, std::span<const std::int64_t>(order_.data() + cursor_, count));
  cursor_ += count;
  return batch;
}

std::string InMemoryBatchStream::save_position() const {
  return "in_memory " + std::to_string(epoch_) + " " + std::to_string(cursor_);
}

void InMemoryBatchStream::restore_position(const std::string& position) {
  std::istringstream in(position);
  std::string kind;
  std::int64_t epoch = 0, cursor = 0;
  if (!(in >> kind >> epoch >> cursor) || kind != "in_memory" || cursor < 0 ||
      cursor > data_.size) {
    throw std::invalid_argument("cannot restore data position '" + position +
                                "': it was saved by another kind of data source");
  }
  start_epoch(epoch);
  cursor_ = cursor;
}

}  // namespace drgrad::engine
