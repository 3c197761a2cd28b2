// Writing a file so that it appears under its final name only when complete: the bytes go to a
// temporary file in the same folder, which is flushed (fsync) and then renamed over the target.
// A crash or an exception leaves either the old file or nothing, never a partial file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace drgrad::io {

// Writes `bytes` to `path` atomically (see AtomicFileWriter). Throws std::runtime_error naming the
// path and the system error when the folder is not writable or the disk is full.
void write_file_atomically(const std::string& path, std::span<const std::byte> bytes);
void write_file_atomically(const std::string& path, std::string_view bytes);

// Streams bytes into a temporary file next to `path`; commit() makes it visible as `path`.
// Destroying the writer without commit() removes the temporary file, and `path` is untouched.
// Writes are buffered; not thread-safe.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path, std::size_t buffer_bytes = 1 << 20);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(std::span<const std::byte> bytes);
  void write(std::string_view bytes);
  // Bytes written so far (the offset the next write lands at).
  std::uint64_t bytes_written() const { return bytes_written_; }
  // Flushes, fsyncs, renames over the final path and fsyncs the folder. After commit() the
  // writer accepts no more writes. Throws on failure (the temporary file is then removed).
  void commit();
  // Discards everything written (removes the temporary file). Safe to call more than once.
  void abandon() noexcept;
  bool committed() const { return committed_; }
  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return temporary_path_; }

 private:
  void flush_buffer();

  std::string path_;
  std::string temporary_path_;
  int descriptor_ = -1;
  std::vector<std::byte> buffer_;
  std::size_t buffer_capacity_;
  std::uint64_t bytes_written_ = 0;
  bool committed_ = false;
};

}  // namespace drgrad::io
