// Checkpoint serialisation with a CRC over the body; atomic writes through io/util/atomic_file.
#include "engine/train/checkpoint.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "io/util/atomic_file.h"
#include "io/util/crc32c.h"

namespace drgrad::engine {

namespace {
class Writer {
 public:
  template <typename V>
  void put(V value) {
    put_bytes(&value, sizeof(V));
  }
  void put_bytes(const void* bytes, std::size_t size) {
    const std::size_t at = data_.size();
    data_.resize(at + size);
    if (size != 0) std::memcpy(data_.data() + at, bytes, size);
  }
  void put_string(const std::string& text) {
    put<std::uint32_t>(static_cast<std::uint32_t>(text.size()));
    put_bytes(text.data(), text.size());
  }
  std::vector<char>& data() { return data_; }

 private:
  std::vector<char> data_;
};

class Reader {
 public:
  Reader(const std::string& data, std::size_t begin, std::size_t end, const std::string& path)
      : data_(data), position_(begin), end_(end), path_(path) {}
  template <typename V>
  V get() {
    V value;
    std::memcpy(&value, take(sizeof(V)), sizeof(V));
    return value;
  }
  const char* take(std::size_t size) {
    if (end_ - position_ < size) {
      throw CheckpointError("checkpoint " + path_ + " ends early at byte " +
                            std::to_string(position_) + "; the file is damaged");
    }
    const char* at = data_.data() + position_;
    position_ += size;
    return at;
  }
  std::string get_string() {
    const auto size = get<std::uint32_t>();
    return std::string(take(size), size);
  }

 private:
  const std::string& data_;
  std::size_t position_, end_;
  const std::string& path_;
};
}  // namespace

void write_checkpoint(const std::string& path, const CheckpointState& state) {
  Writer body;
  body.put<std::int64_t>(state.step);
  body.put<std::int64_t>(state.epoch);
  body.put<std::int64_t>(state.optimizer_steps);
  body.put_string(state.data_position);
  body.put_string(state.model_signature);
  body.put<std::uint32_t>(static_cast<std::uint32_t>(state.tensors.size()));
  for (const auto& [name, tensor] : state.tensors) {
    body.put_string(name);
    body.put<std::uint8_t>(static_cast<std::uint8_t>(tensor.dtype()));
    body.put<std::uint32_t>(static_cast<std::uint32_t>(tensor.rank()));
    for (const auto extent : tensor.shape()) body.put<std::int64_t>(extent);
    const Tensor host = tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu());
    switch (host.dtype()) {
      case DType::kFloat32:
        body.put_bytes(host.data<float>(), host.bytes());
        break;
      case DType::kFloat64:
        body.put_bytes(host.data<double>(), host.bytes());
        break;
      case DType::kInt64:
        body.put_bytes(host.data<std::int64_t>(), host.bytes());
        break;
    }
  }
  Writer file;
  file.put_bytes(kCheckpointMagic, sizeof(kCheckpointMagic));
  file.put<std::uint32_t>(kCheckpointVersion);
  file.put<std::uint64_t>(body.data().size());
  file.put_bytes(body.data().data(), body.data().size());
  file.put<std::uint32_t>(io::crc32c(body.data().data(), body.data().size()));
  io::write_file_atomically(path, std::string_view(file.data().data(), file.data().size()));
}

CheckpointState read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw CheckpointError("cannot open checkpoint " + path +
                          ": no such file or not readable; check the path (run directories keep "
                          "them under checkpoints/)");
  }
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr std::size_t kHeader = sizeof(kCheckpointMagic) + 4 + 8;
  if (data.size() < kHeader || std::memcmp(data.data(), kCheckpointMagic, 8) != 0) {
    throw CheckpointError("file " + path + " is not a drgrad checkpoint (wrong magic bytes)");
  }
  Reader header(data, 8, kHeader, path);
  const auto version = header.get<std::uint32_t>();
  if (version != kCheckpointVersion) {
    throw CheckpointError("checkpoint " + path + " has format version " + std::to_string(version) +
                          "; this drgrad reads version " + std::to_string(kCheckpointVersion));
  }
  const auto body_size = header.get<std::uint64_t>();
  if (data.size() != kHeader + body_size + 4) {
    throw CheckpointError("checkpoint " + path +
                          " is truncated or padded: " + std::to_string(data.size()) +
                          " bytes, expected " + std::to_string(kHeader + body_size + 4));
  }
  std::uint32_t stored_crc;
  std::memcpy(&stored_crc, data.data() + kHeader + body_size, 4);
  if (io::crc32c(data.data() + kHeader, body_size) != stored_crc) {
    throw CheckpointError("checkpoint " + path +
                          " fails its CRC check; the file is damaged. Use an earlier checkpoint");
  }
  Reader body(data, kHeader, kHeader + body_size, path);
  CheckpointState state;
  state.step = body.get<std::int64_t>();
  state.epoch = body.get<std::int64_t>();
  state.optimizer_steps = body.get<std::int64_t>();
  state.data_position = body.get_string();
  state.model_signature = body.get_string();
  const auto count = body.get<std::uint32_t>();
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string name = body.get_string();
    const auto dtype = static_cast<DType>(body.get<std::uint8_t>());
    if (dtype != DType::kFloat32 && dtype != DType::kFloat64 && dtype != DType::kInt64) {
      throw CheckpointError("checkpoint " + path + ": tensor " + name + " has an unknown type");
    }
    Shape shape(body.get<std::uint32_t>());
    for (auto& extent : shape) extent = body.get<std::int64_t>();
    Tensor tensor(shape, dtype, Device::cpu());
    const char* bytes = body.take(tensor.bytes());
    switch (dtype) {
      case DType::kFloat32:
        std::memcpy(tensor.data<float>(), bytes, tensor.bytes());
        break;
      case DType::kFloat64:
        std::memcpy(tensor.data<double>(), bytes, tensor.bytes());
        break;
      case DType::kInt64:
        std::memcpy(tensor.data<std::int64_t>(), bytes, tensor.bytes());
        break;
    }
    state.tensors.emplace(name, tensor);
  }
  return state;
}

}  // namespace drgrad::engine
