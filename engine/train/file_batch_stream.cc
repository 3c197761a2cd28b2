// FileBatchStream: epochs as fresh DatasetReaders; positions as "files <epoch> <reader position>".
#include "engine/train/file_batch_stream.h"

#include <stdexcept>

namespace drgrad::engine {

FileBatchStream::FileBatchStream(io::DatasetReaderOptions options)
    : options_(std::move(options)), base_seed_(options_.seed) {
  options_.num_epochs = 1;
  start_epoch(0);
  schema_ = reader_->schema();
  samples_per_epoch_ = reader_->samples_per_epoch();
}

void FileBatchStream::start_epoch(std::int64_t epoch) {
  epoch_ = epoch;
  options_.seed = base_seed_ * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(epoch);
  reader_.reset();
  reader_ = std::make_unique<io::DatasetReader>(options_);
}

std::optional<io::Batch> FileBatchStream::next() {
  io::Batch batch;
  if (!reader_->next(batch)) return std::nullopt;
  return batch;
}

std::string FileBatchStream::save_position() const {
  return "files " + std::to_string(epoch_) + " " + reader_->position().serialize();
}

void FileBatchStream::restore_position(const std::string& position) {
  const auto first = position.find(' ');
  const auto second = position.find(' ', first + 1);
  if (position.rfind("files ", 0) != 0 || second == std::string::npos) {
    throw std::invalid_argument("cannot restore data position '" + position +
                                "': it was saved by another kind of data source");
  }
  start_epoch(std::stoll(position.substr(first + 1, second - first - 1)));
  reader_->restore(io::ReaderPosition::deserialize(position.substr(second + 1)));
}

std::int64_t FileBatchStream::corrupt_records_skipped() const {
  return reader_->corrupt_records_skipped();
}

}  // namespace drgrad::engine
