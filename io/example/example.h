// tf.train.Example in protobuf wire format: a hand-written decoder (views into the record, no
// allocation per value) and an encoder. Accepts packed and unpacked lists, empty features and
// skips unknown fields, as protobuf parsers must.
//
//   Example  { Features features = 1; }
//   Features { map<string, Feature> feature = 1; }   // entries: key = 1, value = 2
//   Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
//                           Int64List int64_list = 3; } }
//   BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
//   Int64List { repeated int64 value = 1 [packed]; }
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace drgrad::io {

// The record's bytes are not a valid Example. offset() is the byte offset inside the record.
class ExampleParseError : public std::runtime_error {
 public:
  ExampleParseError(const std::string& problem, std::size_t offset)
      : std::runtime_error(problem + " at byte " + std::to_string(offset) + " of the Example"),
        offset_(offset) {}
  std::size_t offset() const { return offset_; }

 private:
  std::size_t offset_;
};

enum class FeatureKind { none, bytes_list, float_list, int64_list };
const char* to_string(FeatureKind kind);

// One feature as it lies in the record: its name and the bytes of its BytesList / FloatList /
// Int64List message (empty for kind none). Views into the record; valid while the record is.
struct FeatureView {
  std::string_view name;
  FeatureKind kind = FeatureKind::none;
  std::span<const std::byte> list;
};

// Calls `visit` once per map entry of the Example, in record order. When a feature name occurs
// twice, both are visited (protobuf semantics give the last one precedence). When a Feature holds
// several kinds (a damaged oneof), the last one is reported. Throws ExampleParseError.
void for_each_feature(std::span<const std::byte> record,
                      const std::function<void(const FeatureView&)>& visit);

// Value decoders for a FeatureView's list bytes; they append to `out` and accept both packed and
// unpacked encodings. Throw ExampleParseError (offsets relative to the list).
void append_float_values(std::span<const std::byte> list, std::vector<float>& out);
void append_int64_values(std::span<const std::byte> list, std::vector<std::int64_t>& out);
void append_bytes_values(std::span<const std::byte> list, std::vector<std::string_view>& out);
// Number of values in a list without decoding them.
std::size_t count_values(const FeatureView& feature);

// An Example decoded into owning containers (for tests, tools and the encoder).
struct Feature {
  FeatureKind kind = FeatureKind::none;
  std::vector<std::string> bytes_values;
  std::vector<float> float_values;
  std::vector<std::int64_t> int64_values;

  static Feature of_floats(std::vector<float> values);
  static Feature of_int64s(std::vector<std::int64_t> values);
  static Feature of_bytes(std::vector<std::string> values);
  bool operator==(const Feature&) const = default;
};
using Example = std::map<std::string, Feature, std::less<>>;

Example decode_example(std::span<const std::byte> record);
// Serialises like TensorFlow: features in name order, floats and int64s packed.
std::string encode_example(const Example& example);
void encode_example(const Example& example, std::string& out);

}  // namespace drgrad::io
