// Checkpoints: parameters, optimizer state, step, epoch, data position and random state in one
// binary file, written atomically (temporary file, fsync, rename) and protected by a CRC32C so
// that a damaged file is refused instead of loaded.
//
// Layout (little-endian): "DRGRADCK" | u32 version | u64 body length | body | u32 crc32c(body)
// body: i64 step | i64 epoch | i64 optimizer steps | str data position | str model signature |
//       u32 tensor count | per tensor: str name | u8 dtype | u32 rank | i64 dims[rank] | bytes
// where str is u32 length + bytes.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include "engine/tensor/tensor.h"

namespace drgrad::engine {

inline constexpr char kCheckpointMagic[8] = {'D', 'R', 'G', 'R', 'A', 'D', 'C', 'K'};
inline constexpr std::uint32_t kCheckpointVersion = 1;

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckpointState {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  std::int64_t optimizer_steps = 0;
  std::string data_position;
  std::string model_signature;            // parameter names and shapes; must match on load
  std::map<std::string, Tensor> tensors;  // CPU tensors: "param/<name>", "optim/<name>/<slot>"
};

void write_checkpoint(const std::string& path, const CheckpointState& state);
// Throws CheckpointError naming the path and what is wrong (missing, truncated, bad CRC, other
// version).
CheckpointState read_checkpoint(const std::string& path);

}  // namespace drgrad::engine
