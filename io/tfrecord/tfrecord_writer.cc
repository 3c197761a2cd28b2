// TfRecordWriter: frames records and streams them, deflated when asked, into an AtomicFileWriter.
#include "io/tfrecord/tfrecord_writer.h"

#include <zlib.h>
#include <stdexcept>
#include <vector>

#include "io/tfrecord/tfrecord_format.h"
#include "io/util/atomic_file.h"

namespace drgrad::io {

namespace {
int window_bits(Compression compression) {
  return compression == Compression::gzip ? 31 : 15;
}
}  // namespace

struct TfRecordWriter::Deflater {
  z_stream stream{};
  std::vector<std::byte> output = std::vector<std::byte>(256 * 1024);
};

TfRecordWriter::TfRecordWriter(const std::string& path, TfRecordWriterOptions options) {
  if (options.compression == Compression::detect) {
    throw std::invalid_argument("TfRecordWriter for '" + path +
                                "': choose a compression (none, gzip, zlib), not detect");
  }
  if (options.compression != Compression::none) {
    deflater_ = std::make_unique<Deflater>();
    if (deflateInit2(&deflater_->stream, options.compression_level, Z_DEFLATED,
                     window_bits(options.compression), 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      throw std::invalid_argument("TfRecordWriter for '" + path + "': zlib rejected level " +
                                  std::to_string(options.compression_level) + " (use -1 or 0..9)");
    }
  }
  try {
    file_ = std::make_unique<AtomicFileWriter>(path);
  } catch (...) {
    if (deflater_) deflateEnd(&deflater_->stream);
    throw;
  }
}

TfRecordWriter::~TfRecordWriter() {
  if (deflater_) deflateEnd(&deflater_->stream);
}

void TfRecordWriter::emit(const std::byte* data, std::size_t size) {
  if (!deflater_) {
    file_->write(std::span<const std::byte>(data, size));
    return;
  }
  z_stream& stream = deflater_->stream;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(data));
  stream.avail_in = static_cast<uInt>(size);
  while (stream.avail_in > 0) {
    stream.next_out = reinterpret_cast<Bytef*>(deflater_->output.data());
    stream.avail_out = static_cast<uInt>(deflater_->output.size());
    deflate(&stream, Z_NO_FLUSH);
    file_->write(std::span<const std::byte>(deflater_->output.data(),
                                            deflater_->output.size() - stream.avail_out));
  }
}

void TfRecordWriter::write(std::string_view payload) {
  write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(payload.data()),
                                   payload.size()));
}

void TfRecordWriter::write(std::span<const std::byte> payload) {
  if (closed_) throw std::logic_error("TfRecordWriter::write after close()");
  std::byte header[tfrecord::kHeaderBytes];
  std::byte footer[tfrecord::kFooterBytes];
  tfrecord::encode_header(payload.size(), header);
  tfrecord::encode_footer(payload, footer);
  emit(header, sizeof(header));
  emit(payload.data(), payload.size());
  emit(footer, sizeof(footer));
  ++records_written_;
}

void TfRecordWriter::close() {
  if (closed_) return;
  if (deflater_) {
    z_stream& stream = deflater_->stream;
    stream.next_in = nullptr;
    stream.avail_in = 0;
    int status = Z_OK;
    while (status != Z_STREAM_END) {
      stream.next_out = reinterpret_cast<Bytef*>(deflater_->output.data());
      stream.avail_out = static_cast<uInt>(deflater_->output.size());
      status = deflate(&stream, Z_FINISH);
      if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
        throw std::runtime_error("zlib deflate failed while finishing '" + file_->path() + "'");
      }
      file_->write(std::span<const std::byte>(deflater_->output.data(),
                                              deflater_->output.size() - stream.avail_out));
    }
  }
  file_->commit();
  closed_ = true;
}

std::string compress_bytes(std::string_view bytes, Compression compression, int level) {
  if (compression == Compression::none) return std::string(bytes);
  if (compression == Compression::detect) {
    throw std::invalid_argument("compress_bytes: choose gzip or zlib, not detect");
  }
  z_stream stream{};
  if (deflateInit2(&stream, level, Z_DEFLATED, window_bits(compression), 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    throw std::invalid_argument("compress_bytes: zlib rejected level " + std::to_string(level));
  }
  std::string out(deflateBound(&stream, static_cast<uLong>(bytes.size())) + 64, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&stream, Z_FINISH);
  out.resize(out.size() - stream.avail_out);
  deflateEnd(&stream);
  if (status != Z_STREAM_END) throw std::runtime_error("compress_bytes: zlib deflate failed");
  return out;
}

std::string decompress_bytes(std::string_view bytes, Compression compression,
                             const std::string& name) {
  auto source = open_memory_source(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()),
      compression, name);
  std::string out;
  std::vector<std::byte> chunk(64 * 1024);
  while (const std::size_t got = source->read(chunk.data(), chunk.size())) {
    out.append(reinterpret_cast<const char*>(chunk.data()), got);
  }
  return out;
}

}  // namespace drgrad::io
