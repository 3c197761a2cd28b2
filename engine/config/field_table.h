// The machinery behind config keys: typed codecs between TOML nodes and C++ values, range
// checks, and the descriptor of a key (read, write, check, docs). config_fields.cc declares
// every key of Config once with these; config.cc drives parsing, --set, validation and dumping
// from that single table. Internal to engine/config.
#pragma once

#include <toml++/toml.h>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/config/config.h"

namespace drgrad::engine::config_internal {

// ---- Text helpers ------------------------------------------------------------------------------

// TOML text of a double that reads back to the same value ("0.001", "5.0", "1e-08", "inf").
std::string format_float(double value);
// A TOML basic string, quoted and escaped.
std::string quote_string(std::string_view text);
// "a string (\"512\")", "an integer (3)", "an array", ... for type errors.
std::string describe_node(const toml::node& node);

// ---- Codecs: one per C++ value type a key can have ----------------------------------------------
// read() stores the node's value in `out` and returns nothing, or returns what is wrong
// ("expects an integer, found a string (\"5\")"); write() gives TOML text.

template <typename T>
struct Codec;

template <>
struct Codec<bool> {
  static std::string type_name() { return "boolean"; }
  static std::optional<std::string> read(const toml::node& node, bool& out);
  static std::string write(bool value) { return value ? "true" : "false"; }
};

template <>
struct Codec<std::int64_t> {
  static std::string type_name() { return "integer"; }
  static std::optional<std::string> read(const toml::node& node, std::int64_t& out);
  static std::string write(std::int64_t value) { return std::to_string(value); }
};

// Floats also accept TOML integers (learning_rate = 1 means 1.0).
template <>
struct Codec<double> {
  static std::string type_name() { return "float"; }
  static std::optional<std::string> read(const toml::node& node, double& out);
  static std::string write(double value) { return format_float(value); }
};

template <>
struct Codec<std::string> {
  static std::string type_name() { return "string"; }
  static std::optional<std::string> read(const toml::node& node, std::string& out);
  static std::string write(const std::string& value) { return quote_string(value); }
};

template <>
struct Codec<kernels::Device> {
  static std::string type_name() { return "string: cpu, cuda or cuda:N"; }
  static std::optional<std::string> read(const toml::node& node, kernels::Device& out);
  static std::string write(const kernels::Device& value) { return quote_string(value.to_string()); }
};

template <typename Element>
struct Codec<std::vector<Element>> {
  static std::string type_name() { return "array of " + Codec<Element>::type_name() + "s"; }
  static std::optional<std::string> read(const toml::node& node, std::vector<Element>& out) {
    const toml::array* array = node.as_array();
    if (array == nullptr) {
      return "expects an " + type_name() + ", found " + describe_node(node) +
             "; write it in TOML form, e.g. [1, 2]";
    }
    std::vector<Element> values(array->size());
    for (std::size_t i = 0; i < array->size(); ++i) {
      if (auto problem = Codec<Element>::read((*array)[i], values[i])) {
        return "element " + std::to_string(i) + " " + *problem;
      }
    }
    out = std::move(values);
    return std::nullopt;
  }
  static std::string write(const std::vector<Element>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      text += (i ? ", " : "") + Codec<Element>::write(values[i]);
    }
    return text + "]";
  }
};

// Enums are TOML strings from a fixed list; EnumNames<E>::entries lists (value, name) pairs.
template <typename E>
struct EnumNames;

template <typename E>
requires std::is_enum_v<E>
struct Codec<E> {
  static std::string allowed() {
    std::string text;
    for (const auto& [value, name] : EnumNames<E>::entries)
      text += (text.empty() ? "" : ", ") + std::string(name);
    return text;
  }
  static std::string type_name() { return "one of: " + allowed(); }
  static std::optional<std::string> read(const toml::node& node, E& out) {
    const auto* text = node.as_string();
    if (text == nullptr) {
      return "expects a string (one of " + allowed() + "), found " + describe_node(node);
    }
    for (const auto& [value, name] : EnumNames<E>::entries) {
      if (text->get() == name) {
        out = value;
        return std::nullopt;
      }
    }
    return "has unknown value " + quote_string(text->get()) + "; expected one of " + allowed();
  }
  static std::string write(E value) {
    for (const auto& [candidate, name] : EnumNames<E>::entries) {
      if (candidate == value) return quote_string(name);
    }
    return "\"?\"";
  }
};

// Optional per-slot overrides: unset values are not written.
template <typename T>
struct OptionalCodec {
  static std::string type_name() { return Codec<T>::type_name() + " (optional)"; }
};

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <typename T>
constexpr bool kIsStringLike =
    std::is_same_v<T, std::string> || std::is_enum_v<T> || std::is_same_v<T, kernels::Device>;

// ---- Range checks: return the violated requirement, or nothing --------------------------------

template <typename T>
using Check = std::function<std::optional<std::string>(const T&)>;

Check<std::int64_t> at_least(std::int64_t minimum);
Check<double> greater_than(double minimum);
Check<double> at_least_float(double minimum);
Check<double> in_closed_range(double low, double high);
Check<double> in_half_open_range(double low, double high);  // [low, high)
Check<std::string> not_empty();
Check<std::vector<std::int64_t>> each_at_least(std::int64_t minimum);
// Applies `check` to the value of an optional when it is set.
template <typename T>
Check<std::optional<T>> when_set(Check<T> check) {
  return [check](const std::optional<T>& value) -> std::optional<std::string> {
    if (!value) return std::nullopt;
    return check(*value);
  };
}

// ---- Field descriptors --------------------------------------------------------------------------

struct FieldInfo {
  std::string key;  // dotted, relative to the owner ("training.batch_size", or "name" in a task)
  std::string type_name;
  std::string doc;
  std::string default_text;  // TOML text of the default, "(unset)" for optional overrides
  bool string_like = false;  // the TOML form is a string (--set takes any text for it)
};

template <typename Owner>
struct Field : FieldInfo {
  // Store the node's value; return what is wrong instead when it does not fit.
  std::function<std::optional<std::string>(Owner&, const toml::node&)> read;
  // TOML text of the current value; nothing for an unset optional.
  std::function<std::optional<std::string>(const Owner&)> write;
  // The violated requirement, or nothing when the value is in range.
  std::function<std::optional<std::string>(const Owner&)> check;
};

// A field of Owner reached through `accessor` (a generic lambda returning a reference to the
// member, for const and non-const owners alike).
template <typename Owner, typename Accessor,
          typename Value =
              std::remove_cvref_t<decltype(std::declval<Accessor>()(std::declval<Owner&>()))>>
Field<Owner> make_field(std::string key, Accessor accessor, std::string doc,
                        Check<Value> check = {}) {
  Field<Owner> field;
  field.key = std::move(key);
  field.doc = std::move(doc);
  if constexpr (IsOptional<Value>::value) {
    using Inner = typename Value::value_type;
    field.type_name = OptionalCodec<Inner>::type_name();
    field.string_like = kIsStringLike<Inner>;
    field.read = [accessor](Owner& owner, const toml::node& node) -> std::optional<std::string> {
      Inner value{};
      if (auto problem = Codec<Inner>::read(node, value)) return problem;
      accessor(owner) = value;
      return std::nullopt;
    };
    field.write = [accessor](const Owner& owner) -> std::optional<std::string> {
      const auto& value = accessor(owner);
      if (!value) return std::nullopt;
      return Codec<Inner>::write(*value);
    };
  } else {
    field.type_name = Codec<Value>::type_name();
    field.string_like = kIsStringLike<Value>;
    field.read = [accessor](Owner& owner, const toml::node& node) {
      return Codec<Value>::read(node, accessor(owner));
    };
    field.write = [accessor](const Owner& owner) -> std::optional<std::string> {
      return Codec<Value>::write(accessor(owner));
    };
  }
  if (check) {
    field.check = [accessor, check](const Owner& owner) { return check(accessor(owner)); };
  } else {
    field.check = [](const Owner&) -> std::optional<std::string> { return std::nullopt; };
  }
  const Owner defaults{};
  field.default_text = field.write(defaults).value_or("(unset)");
  return field;
}

// Declares a field whose TOML key is the member path itself, e.g.
// DRGRAD_CONFIG_FIELD(Config, training.batch_size, "samples per step", at_least(1)).
#define DRGRAD_CONFIG_FIELD(Owner, member_path, ...)    \
  ::drgrad::engine::config_internal::make_field<Owner>( \
      #member_path, [](auto& owner) -> auto& { return owner.member_path; }, __VA_ARGS__)

// An array of tables ([[tasks]], [[features.slot]]) seen through Config, element type erased.
class TableArrayField {
 public:
  TableArrayField(std::string key, std::string doc) : key_(std::move(key)), doc_(std::move(doc)) {}
  virtual ~TableArrayField() = default;
  const std::string& key() const { return key_; }
  const std::string& doc() const { return doc_; }

  virtual std::size_t size(const Config& config) const = 0;
  virtual void resize(Config& config, std::size_t size) const = 0;
  virtual const std::vector<const FieldInfo*>& fields() const = 0;
  virtual std::optional<std::string> read(Config& config, std::size_t index, std::size_t field,
                                          const toml::node& node) const = 0;
  virtual std::optional<std::string> write(const Config& config, std::size_t index,
                                           std::size_t field) const = 0;
  virtual std::optional<std::string> check(const Config& config, std::size_t index,
                                           std::size_t field) const = 0;

 private:
  std::string key_, doc_;
};

template <typename Element>
class TableArray final : public TableArrayField {
 public:
  using Access = std::function<std::vector<Element>&(Config&)>;
  using ConstAccess = std::function<const std::vector<Element>&(const Config&)>;

  TableArray(std::string key, std::string doc, Access access, ConstAccess const_access,
             std::vector<Field<Element>> element_fields)
      : TableArrayField(std::move(key), std::move(doc)),
        access_(std::move(access)),
        const_access_(std::move(const_access)),
        element_fields_(std::move(element_fields)) {
    for (const auto& field : element_fields_) infos_.push_back(&field);
  }

  std::size_t size(const Config& config) const override { return const_access_(config).size(); }
  void resize(Config& config, std::size_t size) const override { access_(config).resize(size); }
  const std::vector<const FieldInfo*>& fields() const override { return infos_; }
  std::optional<std::string> read(Config& config, std::size_t index, std::size_t field,
                                  const toml::node& node) const override {
    return element_fields_[field].read(access_(config)[index], node);
  }
  std::optional<std::string> write(const Config& config, std::size_t index,
                                   std::size_t field) const override {
    return element_fields_[field].write(const_access_(config)[index]);
  }
  std::optional<std::string> check(const Config& config, std::size_t index,
                                   std::size_t field) const override {
    return element_fields_[field].check(const_access_(config)[index]);
  }

 private:
  Access access_;
  ConstAccess const_access_;
  std::vector<Field<Element>> element_fields_;
  std::vector<const FieldInfo*> infos_;
};

// Every key of Config, in the order to_toml writes them: scalar keys grouped by section, and
// each array of tables after the scalar keys of its parent section.
struct ConfigLayout {
  struct Entry {
    bool is_array = false;
    std::size_t index = 0;  // into fields or arrays
  };
  std::vector<Field<Config>> fields;
  std::vector<std::unique_ptr<TableArrayField>> arrays;
  std::vector<Entry> order;

  const Field<Config>* find_field(std::string_view key) const;
  const TableArrayField* find_array(std::string_view key) const;
  // True when `path` is a table that holds keys ("data", "features").
  bool is_section(std::string_view path) const;
  // Every full key: scalar keys, and "tasks.N.name"-style keys of arrays.
  std::vector<std::string> all_keys() const;
};

// The one table of keys (config_fields.cc).
const ConfigLayout& config_layout();

}  // namespace drgrad::engine::config_internal
