// Values of the chat-template language and the Python semantics Jinja2 gives
// them (truthiness, str(), repr(), ==, <, arithmetic, json.dumps).
//
// A value is JSON data (shared and immutable, so reading `messages[3].content`
// copies nothing), Jinja2's undefined (what a missing variable, key, attribute
// or index gives), a namespace() object, or a for-loop's `loop`. Dicts keep
// insertion order, as Python dicts do. An undefined value inside a list or dict
// (`[x]` with x undefined) is stored as a JSON "discarded" value and reads back
// as undefined.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qllm::jinja {

using Json = nlohmann::ordered_json;

// Thrown by value operations (a Python TypeError, an undefined value used, a
// sandbox refusal); the evaluator adds the template line and rethrows it as a
// ChatTemplateError.
struct EvalFailure {
  std::string message;
};
[[noreturn]] void eval_fail(std::string message);

struct Namespace;
struct LoopInfo;

class Value {
 public:
  enum class Kind : std::uint8_t { Undefined, Data, Namespace, Loop };

  Value() = default;  // undefined, unnamed
  explicit Value(Json j)
      : kind_(j.is_discarded() ? Kind::Undefined : Kind::Data),
        data_(j.is_discarded() ? nullptr : std::make_shared<const Json>(std::move(j))) {}
  static Value undefined(std::string what);
  // A part of `parent`'s data, sharing its storage.
  static Value part_of(const Value& parent, const Json& part);
  static Value shared(std::shared_ptr<const Json> data);
  static Value of_namespace(std::shared_ptr<Namespace> ns);
  static Value of_loop(std::shared_ptr<const LoopInfo> loop);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_data() const { return kind_ == Kind::Data; }
  // Data only (callers check is_data() first).
  const Json& json() const { return *data_; }
  const std::shared_ptr<const Json>& data_ptr() const { return data_; }
  const std::shared_ptr<Namespace>& ns() const { return ns_; }
  const std::shared_ptr<const LoopInfo>& loop() const { return loop_; }
  // What was missing, for error messages ("message.content"); may be empty.
  const std::string& undefined_name() const { return name_; }

 private:
  Kind kind_ = Kind::Undefined;
  std::shared_ptr<const Json> data_;
  std::shared_ptr<Namespace> ns_;
  std::shared_ptr<const LoopInfo> loop_;
  std::string name_;
};

struct Namespace {
  std::vector<std::pair<std::string, Value>> attrs;  // insertion order
  const Value* find(const std::string& name) const;
  void set(const std::string& name, Value v);
};

// The `loop` variable of a for loop.
struct LoopInfo {
  std::shared_ptr<const Json> items;  // the (filtered) items, an array
  std::size_t index0 = 0;
  int depth = 1;
  Value attribute(const std::string& name) const;  // index, first, previtem, ...
};

// Positional and keyword arguments of a call, filter or test.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

// ---- Python semantics ----
std::string type_name(const Value& v);  // "str", "int", "dict", "NoneType", "Undefined", ...
std::string type_name(const Json& j);
bool truthy(const Value& v);
bool truthy(const Json& j);
std::string to_str(const Value& v);  // str(v); undefined renders as ""
std::string to_str(const Json& j);
std::string repr(const Json& j);
std::string float_repr(double d);
bool equals(const Value& a, const Value& b);
bool json_equals(const Json& a, const Json& b);
// a <op> b for == != < <= > >= as Python compares (numbers, strings, lists are
// ordered; other types fail).
bool compare(const std::string& op, const Value& a, const Value& b);
Value binary_op(const std::string& op, const Value& a, const Value& b);
Value negate(const Value& v, bool minus);
bool contains(const Value& container, const Value& item);  // item in container
// The items a for loop visits: list items, dict keys, string characters;
// undefined is empty; other values fail ("'int' object is not iterable").
std::shared_ptr<const Json> iterate(const Value& v);
// Fails with "'x' is undefined" when v is undefined.
void require_defined(const Value& v);

bool is_integer(const Json& j);  // int, not bool
bool is_number(const Json& j);   // int or float, not bool
std::int64_t as_int(const Json& j);
double as_double(const Json& j);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys) as in Python.
struct DumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // None: one line; else the text of one level
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
std::string json_dumps(const Json& j, const DumpOptions& opt);

// ---- Python str operations on UTF-8 (code points, Unicode whitespace) ----
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
bool is_space(char32_t c);  // str.isspace()
bool is_printable_codepoint(char32_t c);  // str.isprintable(), for repr()
std::size_t code_point_count(std::string_view s);
std::string str_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
Json str_split(std::string_view s, const std::optional<std::string>& sep, std::int64_t maxsplit, bool from_right);
std::string str_replace(std::string_view s, std::string_view from, std::string_view to, std::int64_t count);
std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);
std::string str_capitalize(std::string_view s);
// Python slice / index semantics (negative indices, clamping) over n elements.
std::vector<std::int64_t> slice_indices(std::int64_t n, std::optional<std::int64_t> start,
                                        std::optional<std::int64_t> stop, std::optional<std::int64_t> step);

}  // namespace qllm::jinja
