// AtomicFileWriter: temporary file (mkstemp in the target's folder), fsync, rename, fsync folder.
#include "io/util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace drgrad::io {
namespace {

std::runtime_error system_error(const std::string& what, const std::string& path) {
  return std::runtime_error(what + " '" + path + "': " + std::strerror(errno) +
                            "; check that the folder exists, is writable and the disk has room");
}

// The process umask, read without changing it (umask(2) can only be read by setting it, which
// would race with other threads creating files).
mode_t current_umask() {
  std::FILE* status = std::fopen("/proc/self/status", "r");
  mode_t mask = 022;
  if (!status) return mask;
  char line[256];
  while (std::fgets(line, sizeof(line), status)) {
    unsigned value = 0;
    if (std::sscanf(line, "Umask: %o", &value) == 1) {
      mask = static_cast<mode_t>(value);
      break;
    }
  }
  std::fclose(status);
  return mask;
}

std::string parent_folder(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path, std::size_t buffer_bytes)
    : path_(std::move(path)), buffer_capacity_(buffer_bytes == 0 ? 1 : buffer_bytes) {
  std::string pattern = path_ + ".tmp-XXXXXX";
  descriptor_ = ::mkstemp(pattern.data());
  if (descriptor_ < 0) throw system_error("cannot create a temporary file for", path_);
  temporary_path_ = pattern;
  // mkstemp creates the file 0600; give it the permissions an ordinary new file would get.
  ::fchmod(descriptor_, 0666 & ~current_umask());
  buffer_.reserve(buffer_capacity_);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) abandon();
}

void AtomicFileWriter::write(std::string_view bytes) {
  write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

void AtomicFileWriter::write(std::span<const std::byte> bytes) {
  if (committed_ || descriptor_ < 0) {
    throw std::logic_error("AtomicFileWriter::write after commit() or abandon() for '" + path_ +
                           "'");
  }
  bytes_written_ += bytes.size();
  if (buffer_.size() + bytes.size() <= buffer_capacity_) {
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    return;
  }
  flush_buffer();
  if (bytes.size() < buffer_capacity_) {
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    return;
  }
  const std::byte* data = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t written = ::write(descriptor_, data, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw system_error("cannot write", temporary_path_);
    }
    data += written;
    left -= static_cast<std::size_t>(written);
  }
}

void AtomicFileWriter::flush_buffer() {
  const std::byte* data = buffer_.data();
  std::size_t left = buffer_.size();
  while (left > 0) {
    const ssize_t written = ::write(descriptor_, data, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw system_error("cannot write", temporary_path_);
    }
    data += written;
    left -= static_cast<std::size_t>(written);
  }
  buffer_.clear();
}

void AtomicFileWriter::commit() {
  if (committed_) return;
  if (descriptor_ < 0) {
    throw std::logic_error("AtomicFileWriter::commit after abandon() for '" + path_ + "'");
  }
  try {
    flush_buffer();
    if (::fsync(descriptor_) != 0) throw system_error("cannot fsync", temporary_path_);
    if (::close(descriptor_) != 0) {
      descriptor_ = -1;
      throw system_error("cannot close", temporary_path_);
    }
    descriptor_ = -1;
    if (::rename(temporary_path_.c_str(), path_.c_str()) != 0) {
      throw system_error("cannot rename the temporary file onto", path_);
    }
  } catch (...) {
    abandon();
    throw;
  }
  committed_ = true;
  // Make the rename itself durable; failure here does not undo the (already visible) file.
  const int folder = ::open(parent_folder(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (folder >= 0) {
    ::fsync(folder);
    ::close(folder);
  }
}

void AtomicFileWriter::abandon() noexcept {
  if (descriptor_ >= 0) {
    ::close(descriptor_);
    descriptor_ = -1;
  }
  if (!committed_ && !temporary_path_.empty()) {
    ::unlink(temporary_path_.c_str());
    temporary_path_.clear();
  }
  buffer_.clear();
}

void write_file_atomically(const std::string& path, std::span<const std::byte> bytes) {
  AtomicFileWriter writer(path, 0);
  writer.write(bytes);
  writer.commit();
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, std::span<const std::byte>(
                                  reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

}  // namespace drgrad::io
