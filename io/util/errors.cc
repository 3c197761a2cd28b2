// Message formatting for the io layer's data errors.
#include "io/util/errors.h"

namespace drgrad::io {

std::string RecordLocation::describe() const {
  std::string text = "file '" + file + "'";
  if (record_index >= 0) text += ", record " + std::to_string(record_index);
  if (byte_offset >= 0) {
    text += ", byte offset " + std::to_string(byte_offset);
    if (offset_in_decompressed_stream) text += " (of the decompressed stream)";
  }
  return text;
}

DataError::DataError(RecordLocation location, const std::string& problem, const std::string& advice)
    : std::runtime_error(location.describe() + ": " + problem + (advice.empty() ? "" : "; ") +
                         advice),
      location_(std::move(location)),
      problem_(problem) {}

}  // namespace drgrad::io
