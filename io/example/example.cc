// Protobuf wire-format decoding and encoding of tf.train.Example. Every read is bounds-checked;
// malformed input raises ExampleParseError, never undefined behaviour (the fuzzer checks this).
#include "io/example/example.h"

#include <cstring>

namespace drgrad::io {
namespace {

enum WireType : std::uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};

// A cursor over a protobuf message. `base` is the message's offset inside the record, so errors
// point at the record byte.
class WireCursor {
 public:
  WireCursor(std::span<const std::byte> bytes, std::size_t base)
      : data_(reinterpret_cast<const unsigned char*>(bytes.data())),
        size_(bytes.size()),
        base_(base) {}

  bool done() const { return position_ >= size_; }
  std::size_t offset() const { return base_ + position_; }

  std::uint64_t read_varint() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (position_ >= size_) fail("the message ends inside a varint");
      const unsigned char byte = data_[position_++];
      value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("a varint is longer than 10 bytes");
  }

  // Reads a tag; returns false at the end of the message.
  bool read_tag(std::uint32_t& field, std::uint32_t& wire_type) {
    if (done()) return false;
    const std::uint64_t tag = read_varint();
    field = static_cast<std::uint32_t>(tag >> 3);
    wire_type = static_cast<std::uint32_t>(tag & 7);
    if (field == 0 || (tag >> 3) > 0x1fffffff) fail("a field number is invalid");
    return true;
  }

  std::span<const std::byte> read_length_delimited(std::size_t& start_offset) {
    const std::uint64_t length = read_varint();
    if (length > size_ - position_) fail("a length-delimited field runs past the message end");
    start_offset = offset();
    const auto* start = reinterpret_cast<const std::byte*>(data_ + position_);
    position_ += static_cast<std::size_t>(length);
    return {start, static_cast<std::size_t>(length)};
  }

  const unsigned char* read_fixed(std::size_t bytes) {
    if (bytes > size_ - position_) fail("a fixed-width field runs past the message end");
    const unsigned char* start = data_ + position_;
    position_ += bytes;
    return start;
  }

  void skip(std::uint32_t wire_type) {
    std::size_t ignored;
    switch (wire_type) {
      case kVarint:
        read_varint();
        return;
      case kFixed64:
        read_fixed(8);
        return;
      case kLengthDelimited:
        read_length_delimited(ignored);
        return;
      case kFixed32:
        read_fixed(4);
        return;
      default:
        fail("wire type " + std::to_string(wire_type) + " (groups or invalid) is not supported");
    }
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw ExampleParseError(problem, offset());
  }

 private:
  const unsigned char* data_;
  std::size_t size_;
  std::size_t base_;
  std::size_t position_ = 0;
};

[[noreturn]] [[gnu::noinline]] void wrong_wire_type(const WireCursor& cursor, std::uint32_t actual,
                                                    std::uint32_t expected, const char* what) {
  cursor.fail(std::string(what) + " has wire type " + std::to_string(actual) + ", expected " +
              std::to_string(expected));
}

// The check inlines into the parsers; only the (cold) error path is a call.
inline void require_wire_type(const WireCursor& cursor, std::uint32_t actual,
                              std::uint32_t expected, const char* what) {
  if (actual != expected) [[unlikely]] {
    wrong_wire_type(cursor, actual, expected, what);
  }
}

void parse_feature(std::span<const std::byte> bytes, std::size_t base, FeatureView& view) {
  WireCursor cursor(bytes, base);
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field >= 1 && field <= 3) {
      require_wire_type(cursor, wire_type, kLengthDelimited, "a Feature list");
      std::size_t start;
      view.list = cursor.read_length_delimited(start);
      view.kind = field == 1   ? FeatureKind::bytes_list
                  : field == 2 ? FeatureKind::float_list
                               : FeatureKind::int64_list;
    } else {
      cursor.skip(wire_type);
    }
  }
}

void parse_map_entry(std::span<const std::byte> bytes, std::size_t base,
                     const std::function<void(const FeatureView&)>& visit) {
  WireCursor cursor(bytes, base);
  FeatureView view;
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field == 1) {
      require_wire_type(cursor, wire_type, kLengthDelimited, "a feature name");
      std::size_t start;
      const auto key = cursor.read_length_delimited(start);
      view.name = std::string_view(reinterpret_cast<const char*>(key.data()), key.size());
    } else if (field == 2) {
      require_wire_type(cursor, wire_type, kLengthDelimited, "a Feature");
      std::size_t start;
      const auto value = cursor.read_length_delimited(start);
      view.kind = FeatureKind::none;
      view.list = {};
      parse_feature(value, start, view);
    } else {
      cursor.skip(wire_type);
    }
  }
  visit(view);
}

void parse_features(std::span<const std::byte> bytes, std::size_t base,
                    const std::function<void(const FeatureView&)>& visit) {
  WireCursor cursor(bytes, base);
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field == 1) {
      require_wire_type(cursor, wire_type, kLengthDelimited, "a feature map entry");
      std::size_t start;
      const auto entry = cursor.read_length_delimited(start);
      parse_map_entry(entry, start, visit);
    } else {
      cursor.skip(wire_type);
    }
  }
}

// Encoding helpers.
void put_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}
std::size_t varint_size(std::uint64_t value) {
  std::size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}
void put_tag(std::string& out, std::uint32_t field, std::uint32_t wire_type) {
  put_varint(out, (static_cast<std::uint64_t>(field) << 3) | wire_type);
}
void put_length_delimited(std::string& out, std::uint32_t field, std::string_view bytes) {
  put_tag(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

std::string encode_feature(const Feature& feature) {
  std::string list;
  std::uint32_t field = 0;
  switch (feature.kind) {
    case FeatureKind::none:
      return {};
    case FeatureKind::bytes_list:
      field = 1;
      for (const auto& value : feature.bytes_values) put_length_delimited(list, 1, value);
      break;
    case FeatureKind::float_list:
      field = 2;
      if (!feature.float_values.empty()) {
        put_tag(list, 1, kLengthDelimited);
        put_varint(list, feature.float_values.size() * 4);
        const std::size_t start = list.size();
        list.resize(start + feature.float_values.size() * 4);
        std::memcpy(list.data() + start, feature.float_values.data(),
                    feature.float_values.size() * 4);
      }
      break;
    case FeatureKind::int64_list:
      field = 3;
      if (!feature.int64_values.empty()) {
        std::size_t packed_size = 0;
        for (const auto value : feature.int64_values) {
          packed_size += varint_size(static_cast<std::uint64_t>(value));
        }
        put_tag(list, 1, kLengthDelimited);
        put_varint(list, packed_size);
        for (const auto value : feature.int64_values) {
          put_varint(list, static_cast<std::uint64_t>(value));
        }
      }
      break;
  }
  std::string encoded;
  put_length_delimited(encoded, field, list);
  return encoded;
}

}  // namespace

const char* to_string(FeatureKind kind) {
  switch (kind) {
    case FeatureKind::none:
      return "empty";
    case FeatureKind::bytes_list:
      return "bytes_list";
    case FeatureKind::float_list:
      return "float_list";
    case FeatureKind::int64_list:
      return "int64_list";
  }
  return "unknown";
}

void for_each_feature(std::span<const std::byte> record,
                      const std::function<void(const FeatureView&)>& visit) {
  WireCursor cursor(record, 0);
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field == 1) {
      require_wire_type(cursor, wire_type, kLengthDelimited, "Example.features");
      std::size_t start;
      const auto features = cursor.read_length_delimited(start);
      parse_features(features, start, visit);
    } else {
      cursor.skip(wire_type);
    }
  }
}

void append_float_values(std::span<const std::byte> list, std::vector<float>& out) {
  WireCursor cursor(list, 0);
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field != 1) {
      cursor.skip(wire_type);
    } else if (wire_type == kLengthDelimited) {
      std::size_t start;
      const auto packed = cursor.read_length_delimited(start);
      if (packed.size() % 4 != 0) cursor.fail("a packed float list is not a multiple of 4 bytes");
      const std::size_t count = packed.size() / 4;
      if (count == 0) continue;  // an empty packed list (memcpy must not see a null vector)
      const std::size_t old_size = out.size();
      out.resize(old_size + count);
      std::memcpy(out.data() + old_size, packed.data(), packed.size());
    } else if (wire_type == kFixed32) {
      float value;
      std::memcpy(&value, cursor.read_fixed(4), 4);
      out.push_back(value);
    } else {
      cursor.fail("a float value has wire type " + std::to_string(wire_type));
    }
  }
}

void append_int64_values(std::span<const std::byte> list, std::vector<std::int64_t>& out) {
  WireCursor cursor(list, 0);
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field != 1) {
      cursor.skip(wire_type);
    } else if (wire_type == kLengthDelimited) {
      std::size_t start;
      const auto packed = cursor.read_length_delimited(start);
      WireCursor values(packed, start);
      while (!values.done()) out.push_back(static_cast<std::int64_t>(values.read_varint()));
    } else if (wire_type == kVarint) {
      out.push_back(static_cast<std::int64_t>(cursor.read_varint()));
    } else {
      cursor.fail("an int64 value has wire type " + std::to_string(wire_type));
    }
  }
}

void append_bytes_values(std::span<const std::byte> list, std::vector<std::string_view>& out) {
  WireCursor cursor(list, 0);
  std::uint32_t field, wire_type;
  while (cursor.read_tag(field, wire_type)) {
    if (field != 1) {
      cursor.skip(wire_type);
      continue;
    }
    require_wire_type(cursor, wire_type, kLengthDelimited, "a bytes value");
    std::size_t start;
    const auto value = cursor.read_length_delimited(start);
    out.emplace_back(reinterpret_cast<const char*>(value.data()), value.size());
  }
}

std::size_t count_values(const FeatureView& feature) {
  switch (feature.kind) {
    case FeatureKind::none:
      return 0;
    case FeatureKind::float_list: {
      std::vector<float> values;
      append_float_values(feature.list, values);
      return values.size();
    }
    case FeatureKind::int64_list: {
      std::vector<std::int64_t> values;
      append_int64_values(feature.list, values);
      return values.size();
    }
    case FeatureKind::bytes_list: {
      std::vector<std::string_view> values;
      append_bytes_values(feature.list, values);
      return values.size();
    }
  }
  return 0;
}

Feature Feature::of_floats(std::vector<float> values) {
  Feature feature;
  feature.kind = FeatureKind::float_list;
  feature.float_values = std::move(values);
  return feature;
}
Feature Feature::of_int64s(std::vector<std::int64_t> values) {
  Feature feature;
  feature.kind = FeatureKind::int64_list;
  feature.int64_values = std::move(values);
  return feature;
}
Feature Feature::of_bytes(std::vector<std::string> values) {
  Feature feature;
  feature.kind = FeatureKind::bytes_list;
  feature.bytes_values = std::move(values);
  return feature;
}

Example decode_example(std::span<const std::byte> record) {
  Example example;
  for_each_feature(record, [&](const FeatureView& view) {
    Feature feature;
    feature.kind = view.kind;
    switch (view.kind) {
      case FeatureKind::none:
        break;
      case FeatureKind::float_list:
        append_float_values(view.list, feature.float_values);
        break;
      case FeatureKind::int64_list:
        append_int64_values(view.list, feature.int64_values);
        break;
      case FeatureKind::bytes_list: {
        std::vector<std::string_view> values;
        append_bytes_values(view.list, values);
        feature.bytes_values.assign(values.begin(), values.end());
        break;
      }
    }
    example.insert_or_assign(std::string(view.name), std::move(feature));
  });
  return example;
}

void encode_example(const Example& example, std::string& out) {
  std::string features;
  std::string entry;
  for (const auto& [name, feature] : example) {
    entry.clear();
    put_length_delimited(entry, 1, name);
    put_length_delimited(entry, 2, encode_feature(feature));
    put_length_delimited(features, 1, entry);
  }
  put_length_delimited(out, 1, features);
}

std::string encode_example(const Example& example) {
  std::string out;
  encode_example(example, out);
  return out;
}

}  // namespace drgrad::io
