// Python semantics of template values: see chat_template_value.h.
#include "engine/tokenizer/chat_template_value.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace qllm::jinja {

void eval_fail(std::string message) { throw EvalFailure{std::move(message)}; }

Value Value::undefined(std::string what) {
  Value v;
  v.name_ = std::move(what);
  return v;
}

Value Value::part_of(const Value& parent, const Json& part) {
  return shared(std::shared_ptr<const Json>(parent.data_, &part));
}

Value Value::shared(std::shared_ptr<const Json> data) {
  Value v;
  if (data->is_discarded()) return v;  // an undefined list item or dict value
  v.kind_ = Kind::Data;
  v.data_ = std::move(data);
  return v;
}

Value Value::of_namespace(std::shared_ptr<Namespace> ns) {
  Value v;
  v.kind_ = Kind::Namespace;
  v.ns_ = std::move(ns);
  return v;
}

Value Value::of_loop(std::shared_ptr<const LoopInfo> loop) {
  Value v;
  v.kind_ = Kind::Loop;
  v.loop_ = std::move(loop);
  return v;
}

const Value* Namespace::find(const std::string& name) const {
  for (const auto& [k, v] : attrs)
    if (k == name) return &v;
  return nullptr;
}

void Namespace::set(const std::string& name, Value v) {
  for (auto& [k, old] : attrs)
    if (k == name) {
      old = std::move(v);
      return;
    }
  attrs.emplace_back(name, std::move(v));
}

Value LoopInfo::attribute(const std::string& name) const {
  const auto n = static_cast<std::int64_t>(items->size());
  const auto i = static_cast<std::int64_t>(index0);
  if (name == "index0") return Value(Json(i));
  if (name == "index") return Value(Json(i + 1));
  if (name == "revindex") return Value(Json(n - i));
  if (name == "revindex0") return Value(Json(n - i - 1));
  if (name == "first") return Value(Json(i == 0));
  if (name == "last") return Value(Json(i == n - 1));
  if (name == "length") return Value(Json(n));
  if (name == "depth") return Value(Json(depth));
  if (name == "depth0") return Value(Json(depth - 1));
  if (name == "previtem")
    return i > 0 ? Value::shared(std::shared_ptr<const Json>(items, &(*items)[index0 - 1]))
                 : Value::undefined("loop.previtem");
  if (name == "nextitem")
    return i + 1 < n ? Value::shared(std::shared_ptr<const Json>(items, &(*items)[index0 + 1]))
                     : Value::undefined("loop.nextitem");
  return Value::undefined("loop." + name);
}

// ---- numbers ----

bool is_integer(const Json& j) { return j.is_number_integer(); }
bool is_number(const Json& j) { return j.is_number(); }

static bool numeric(const Json& j) { return j.is_number() || j.is_boolean(); }

std::int64_t as_int(const Json& j) {
  if (j.is_boolean()) return j.get<bool>() ? 1 : 0;
  if (j.is_number_unsigned()) {
    auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      eval_fail("integer too large");
    return static_cast<std::int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<std::int64_t>();
  return static_cast<std::int64_t>(j.get<double>());
}

double as_double(const Json& j) {
  if (j.is_number_float()) return j.get<double>();
  if (j.is_number_unsigned()) return static_cast<double>(j.get<std::uint64_t>());
  return static_cast<double>(as_int(j));
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(res.ptr - buf));
  std::string sign;
  if (!s.empty() && s[0] == '-') {
    sign = "-";
    s.remove_prefix(1);
  }
  auto epos = s.find('e');
  std::string digits;
  for (char c : s.substr(0, epos))
    if (c != '.') digits += c;
  int exp = std::stoi(std::string(s.substr(epos + 1)));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = sign;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      auto int_len = static_cast<std::size_t>(exp) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    } else {
      out += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  }
  return out;
}

// ---- type names, truthiness, str, repr ----

std::string type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "NoneType";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "int";
    case Json::value_t::number_float: return "float";
    case Json::value_t::string: return "str";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "dict";
    case Json::value_t::discarded: return "Undefined";
    default: return "object";
  }
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::Namespace: return "Namespace";
    case Value::Kind::Loop: return "LoopContext";
    case Value::Kind::Data: break;
  }
  return type_name(v.json());
}

bool truthy(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return j.get<bool>();
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return as_int(j) != 0;
    case Json::value_t::number_float: return j.get<double>() != 0.0;
    case Json::value_t::string: return !j.get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object: return !j.empty();
    case Json::value_t::discarded: return false;
    default: return true;
  }
}

bool truthy(const Value& v) {
  if (v.is_undefined()) return false;
  if (!v.is_data()) return true;
  return truthy(v.json());
}

std::string repr(const Json& j) {
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    bool has_single = s.find('\'') != std::string::npos;
    bool has_double = s.find('"') != std::string::npos;
    char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (char32_t c : utf8_decode(s)) {
      if (c == static_cast<char32_t>(quote) || c == U'\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c == U'\n') {
        out += "\\n";
      } else if (c == U'\r') {
        out += "\\r";
      } else if (c == U'\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) ||
                 (c > 0x7f && !is_printable_codepoint(c))) {
        if (c < 0x100) out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
        else if (c < 0x10000) out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        else out += fmt::format("\\U{:08x}", static_cast<unsigned>(c));
      } else {
        utf8_append(out, c);
      }
    }
    out += quote;
    return out;
  }
  if (j.is_array()) {
    std::string out = "[";
    bool first = true;
    for (const auto& item : j) {
      if (!first) out += ", ";
      first = false;
      out += repr(item);
    }
    return out + "]";
  }
  if (j.is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, item] : j.items()) {
      if (!first) out += ", ";
      first = false;
      out += repr(Json(k)) + ": " + repr(item);
    }
    return out + "}";
  }
  if (j.is_discarded()) return "Undefined";
  return to_str(j);
}

std::string to_str(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return j.get<bool>() ? "True" : "False";
    case Json::value_t::number_integer: return std::to_string(j.get<std::int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(j.get<std::uint64_t>());
    case Json::value_t::number_float: return float_repr(j.get<double>());
    case Json::value_t::string: return j.get<std::string>();
    case Json::value_t::discarded: return "";
    default: return repr(j);
  }
}

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::Data: return to_str(v.json());
    case Value::Kind::Namespace: {
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& [k, item] : v.ns()->attrs) {
        if (!first) out += ", ";
        first = false;
        out += repr(Json(k)) + ": " + (item.is_data() ? repr(item.json()) : to_str(item));
      }
      return out + "}>";
    }
    case Value::Kind::Loop:
      return fmt::format("<LoopContext {}/{}>", v.loop()->index0 + 1, v.loop()->items->size());
  }
  return "";
}

// ---- comparison ----

bool json_equals(const Json& a, const Json& b) {
  if (numeric(a) && numeric(b)) {
    if (a.is_number_float() || b.is_number_float()) return as_double(a) == as_double(b);
    auto big = [](const Json& j) {
      return j.is_number_unsigned() &&
             j.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    };
    if (big(a) || big(b))
      return a.is_number_unsigned() && b.is_number_unsigned() && a.get<std::uint64_t>() == b.get<std::uint64_t>();
    return as_int(a) == as_int(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_discarded()) return true;  // undefined == undefined
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!json_equals(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [k, item] : a.items()) {
      auto it = b.find(k);
      if (it == b.end() || !json_equals(item, *it)) return false;
    }
    return true;
  }
  return a == b;
}

bool equals(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined: return true;
    case Value::Kind::Namespace: return a.ns() == b.ns();
    case Value::Kind::Loop: return a.loop() == b.loop();
    case Value::Kind::Data: return json_equals(a.json(), b.json());
  }
  return false;
}

void require_defined(const Value& v) {
  if (v.is_undefined())
    eval_fail(v.undefined_name().empty() ? "value is undefined"
                                         : fmt::format("'{}' is undefined", v.undefined_name()));
}

// Python's a < b; nullopt when the types are not ordered.
static std::optional<bool> json_less(const Json& a, const Json& b) {
  if (numeric(a) && numeric(b)) {
    if (a.is_number_float() || b.is_number_float()) return as_double(a) < as_double(b);
    return as_int(a) < as_int(b);
  }
  if (a.is_string() && b.is_string())
    return a.get_ref<const std::string&>() < b.get_ref<const std::string&>();
  if (a.is_array() && b.is_array()) {
    std::size_t n = std::min(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i)
      if (!json_equals(a[i], b[i])) return json_less(a[i], b[i]);
    return a.size() < b.size();
  }
  return std::nullopt;
}

bool compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  require_defined(a);
  require_defined(b);
  std::optional<bool> lt, gt;
  if (a.is_data() && b.is_data()) {
    lt = json_less(a.json(), b.json());
    gt = json_less(b.json(), a.json());
  }
  if (!lt || !gt)
    eval_fail(fmt::format("'{}' not supported between instances of '{}' and '{}'", op, type_name(a),
                          type_name(b)));
  if (op == "<") return *lt;
  if (op == ">") return *gt;
  if (op == "<=") return !*gt;
  return !*lt;  // >=
}

bool contains(const Value& container, const Value& item) {
  if (container.is_undefined()) return false;
  if (!container.is_data())
    eval_fail(fmt::format("argument of type '{}' is not iterable", type_name(container)));
  const Json& c = container.json();
  if (c.is_string()) {
    if (!item.is_data() || !item.json().is_string())
      eval_fail(fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
    return c.get_ref<const std::string&>().find(item.json().get_ref<const std::string&>()) !=
           std::string::npos;
  }
  if (c.is_array()) {
    for (const auto& e : c)
      if (item.is_data() ? json_equals(e, item.json()) : (item.is_undefined() && e.is_discarded())) return true;
    return false;
  }
  if (c.is_object()) {
    if (item.is_data() && (item.json().is_array() || item.json().is_object()))
      eval_fail(fmt::format("unhashable type: '{}'", type_name(item)));
    return item.is_data() && item.json().is_string() && c.contains(item.json());
  }
  eval_fail(fmt::format("argument of type '{}' is not iterable", type_name(c)));
}

std::shared_ptr<const Json> iterate(const Value& v) {
  if (v.is_undefined()) return std::make_shared<const Json>(Json::array());
  if (!v.is_data()) eval_fail(fmt::format("'{}' object is not iterable", type_name(v)));
  const Json& j = v.json();
  if (j.is_array()) return v.data_ptr();
  Json out = Json::array();
  if (j.is_object()) {
    for (const auto& [k, item] : j.items()) out.push_back(k);
  } else if (j.is_string()) {
    for (char32_t c : utf8_decode(j.get_ref<const std::string&>())) {
      std::string s;
      utf8_append(s, c);
      out.push_back(std::move(s));
    }
  } else {
    eval_fail(fmt::format("'{}' object is not iterable", type_name(j)));
  }
  return std::make_shared<const Json>(std::move(out));
}

}  // namespace qllm::jinja
