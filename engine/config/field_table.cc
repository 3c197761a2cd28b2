// Codecs, range checks and key lookup for the configuration field table.
#include "engine/config/field_table.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace drgrad::engine::config_internal {

std::string format_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  // Shortest text that reads back to the same double.
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

std::string quote_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char escape[8];
          std::snprintf(escape, sizeof(escape), "\\u%04x", static_cast<unsigned>(c));
          out += escape;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string describe_node(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string (" + quote_string(**node.as_string()) + ")";
    case toml::node_type::integer:
      return "an integer (" + std::to_string(**node.as_integer()) + ")";
    case toml::node_type::floating_point:
      return "a float (" + format_float(**node.as_floating_point()) + ")";
    case toml::node_type::boolean:
      return std::string("a boolean (") + (**node.as_boolean() ? "true" : "false") + ")";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::optional<std::string> Codec<bool>::read(const toml::node& node, bool& out) {
  if (const auto* value = node.as_boolean()) {
    out = value->get();
    return std::nullopt;
  }
  return "expects a boolean (true or false), found " + describe_node(node);
}

std::optional<std::string> Codec<std::int64_t>::read(const toml::node& node, std::int64_t& out) {
  if (const auto* value = node.as_integer()) {
    out = value->get();
    return std::nullopt;
  }
  return "expects an integer, found " + describe_node(node);
}

std::optional<std::string> Codec<double>::read(const toml::node& node, double& out) {
  if (const auto* value = node.as_floating_point()) {
    out = value->get();
    return std::nullopt;
  }
  if (const auto* value = node.as_integer()) {
    out = static_cast<double>(value->get());
    return std::nullopt;
  }
  return "expects a float, found " + describe_node(node);
}

std::optional<std::string> Codec<std::string>::read(const toml::node& node, std::string& out) {
  if (const auto* value = node.as_string()) {
    out = value->get();
    return std::nullopt;
  }
  return "expects a string, found " + describe_node(node);
}

std::optional<std::string> Codec<kernels::Device>::read(const toml::node& node,
                                                        kernels::Device& out) {
  const auto* value = node.as_string();
  if (value == nullptr) {
    return "expects a string (cpu, cuda or cuda:N), found " + describe_node(node);
  }
  try {
    out = kernels::parse_device(value->get());
  } catch (const std::invalid_argument&) {
    return "has unknown value " + quote_string(value->get()) + "; expected cpu, cuda or cuda:N";
  } catch (const std::out_of_range&) {  // std::stoi of an index past int
    return "has device index " + quote_string(value->get()) +
           " out of range; expected cpu, cuda or cuda:N with N a device number (0 for the first)";
  }
  return std::nullopt;
}

Check<std::int64_t> at_least(std::int64_t minimum) {
  return [minimum](const std::int64_t& value) -> std::optional<std::string> {
    if (value >= minimum) return std::nullopt;
    return "must be >= " + std::to_string(minimum);
  };
}

Check<double> greater_than(double minimum) {
  return [minimum](const double& value) -> std::optional<std::string> {
    if (value > minimum) return std::nullopt;  // false for NaN too
    return "must be > " + format_float(minimum);
  };
}

Check<double> at_least_float(double minimum) {
  return [minimum](const double& value) -> std::optional<std::string> {
    if (value >= minimum && std::isfinite(value)) return std::nullopt;
    return "must be finite and >= " + format_float(minimum);
  };
}

Check<double> in_closed_range(double low, double high) {
  return [low, high](const double& value) -> std::optional<std::string> {
    if (low <= value && value <= high) return std::nullopt;
    return "must be in [" + format_float(low) + ", " + format_float(high) + "]";
  };
}

Check<double> in_half_open_range(double low, double high) {
  return [low, high](const double& value) -> std::optional<std::string> {
    if (low <= value && value < high) return std::nullopt;
    return "must be in [" + format_float(low) + ", " + format_float(high) + ")";
  };
}

Check<std::string> not_empty() {
  return [](const std::string& value) -> std::optional<std::string> {
    if (!value.empty()) return std::nullopt;
    return "must not be empty";
  };
}

Check<std::vector<std::int64_t>> each_at_least(std::int64_t minimum) {
  return [minimum](const std::vector<std::int64_t>& values) -> std::optional<std::string> {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i] < minimum) {
        return "element " + std::to_string(i) + " must be >= " + std::to_string(minimum);
      }
    }
    return std::nullopt;
  };
}

const Field<Config>* ConfigLayout::find_field(std::string_view key) const {
  for (const auto& field : fields) {
    if (field.key == key) return &field;
  }
  return nullptr;
}

const TableArrayField* ConfigLayout::find_array(std::string_view key) const {
  for (const auto& array : arrays) {
    if (array->key() == key) return array.get();
  }
  return nullptr;
}

bool ConfigLayout::is_section(std::string_view path) const {
  const std::string prefix = std::string(path) + ".";
  for (const auto& field : fields) {
    if (field.key.starts_with(prefix)) return true;
  }
  for (const auto& array : arrays) {
    if (array->key().starts_with(prefix)) return true;
  }
  return false;
}

std::vector<std::string> ConfigLayout::all_keys() const {
  std::vector<std::string> keys;
  for (const auto& entry : order) {
    if (!entry.is_array) {
      keys.push_back(fields[entry.index].key);
      continue;
    }
    const auto& array = *arrays[entry.index];
    for (const FieldInfo* field : array.fields()) keys.push_back(array.key() + ".N." + field->key);
  }
  return keys;
}

}  // namespace drgrad::engine::config_internal
