// Arithmetic on template values (Python semantics) and json.dumps.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "engine/tokenizer/chat_template_value.h"

namespace qllm::jinja {
namespace {

// Strings and lists built by `*` are capped so a template cannot exhaust memory.
constexpr std::size_t kMaxRepeatBytes = std::size_t{64} << 20;

bool numeric(const Json& j) { return j.is_number() || j.is_boolean(); }
bool is_float(const Json& j) { return j.is_number_float(); }

[[noreturn]] void unsupported(const std::string& op, const Json& a, const Json& b) {
  eval_fail(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a),
                        type_name(b)));
}

std::int64_t add_int(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) eval_fail("integer overflow");
  return r;
}

std::int64_t sub_int(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) eval_fail("integer overflow");
  return r;
}

std::int64_t mul_int(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) eval_fail("integer overflow");
  return r;
}

Json repeat(const Json& seq, std::int64_t times) {
  if (times <= 0) return seq.is_string() ? Json("") : Json::array();
  auto n = static_cast<std::size_t>(times);
  std::size_t unit = seq.is_string() ? seq.get_ref<const std::string&>().size() : seq.size() * 16;
  if (unit != 0 && n > kMaxRepeatBytes / unit) eval_fail("result of '*' is too large");
  if (seq.is_string()) {
    std::string out;
    out.reserve(unit * n);
    for (std::size_t i = 0; i < n; ++i) out += seq.get_ref<const std::string&>();
    return out;
  }
  Json out = Json::array();
  for (std::size_t i = 0; i < n; ++i)
    for (const auto& e : seq) out.push_back(e);
  return out;
}

double float_mod(double x, double y) {
  double mod = std::fmod(x, y);
  if (mod != 0.0) {
    if ((y < 0) != (mod < 0)) mod += y;
  } else {
    mod = std::copysign(0.0, y);
  }
  return mod;
}

double float_floordiv(double x, double y) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0.0 && ((y < 0) != (mod < 0))) div -= 1.0;
  if (div != 0.0) {
    double floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
    return floordiv;
  }
  return std::copysign(0.0, x / y);
}

Json int_pow(std::int64_t base, std::int64_t exp) {
  std::int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = mul_int(result, base);
    exp >>= 1;
    if (exp > 0) base = mul_int(base, base);
  }
  return result;
}

Json arith(const std::string& op, const Json& x, const Json& y) {
  if (op == "+") {
    if (numeric(x) && numeric(y)) {
      if (is_float(x) || is_float(y)) return as_double(x) + as_double(y);
      return add_int(as_int(x), as_int(y));
    }
    if (x.is_string() && y.is_string())
      return x.get_ref<const std::string&>() + y.get_ref<const std::string&>();
    if (x.is_array() && y.is_array()) {
      Json out = x;
      for (const auto& e : y) out.push_back(e);
      return out;
    }
    if (x.is_string() || x.is_array())
      eval_fail(fmt::format("can only concatenate {0} (not \"{1}\") to {0}", type_name(x), type_name(y)));
    unsupported(op, x, y);
  }
  if (op == "*") {
    if (numeric(x) && numeric(y)) {
      if (is_float(x) || is_float(y)) return as_double(x) * as_double(y);
      return mul_int(as_int(x), as_int(y));
    }
    if ((x.is_string() || x.is_array()) && (y.is_number_integer() || y.is_boolean())) return repeat(x, as_int(y));
    if ((y.is_string() || y.is_array()) && (x.is_number_integer() || x.is_boolean())) return repeat(y, as_int(x));
    if (x.is_string() || x.is_array() || y.is_string() || y.is_array())
      eval_fail(fmt::format("can't multiply sequence by non-int of type '{}'",
                            type_name(x.is_string() || x.is_array() ? y : x)));
    unsupported(op, x, y);
  }
  if (op == "%" && x.is_string()) eval_fail("string formatting with '%' is not supported");
  if (!numeric(x) || !numeric(y)) unsupported(op, x, y);
  const bool floats = is_float(x) || is_float(y);
  if (op == "-") {
    if (floats) return as_double(x) - as_double(y);
    return sub_int(as_int(x), as_int(y));
  }
  if (op == "**") {
    if (!floats && as_int(y) >= 0) return int_pow(as_int(x), as_int(y));
    if (as_double(x) == 0.0 && as_double(y) < 0) eval_fail("0.0 cannot be raised to a negative power");
    return std::pow(as_double(x), as_double(y));
  }
  // Division and modulo.
  if (as_double(y) == 0.0)
    eval_fail(op == "/" ? "division by zero" : "integer division or modulo by zero");
  if (op == "/") return as_double(x) / as_double(y);
  if (floats) {
    return op == "//" ? float_floordiv(as_double(x), as_double(y)) : float_mod(as_double(x), as_double(y));
  }
  std::int64_t a = as_int(x), b = as_int(y);
  if (a == std::numeric_limits<std::int64_t>::min() && b == -1) eval_fail("integer overflow");
  std::int64_t q = a / b, r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) {
    q -= 1;
    r += b;
  }
  return op == "//" ? q : r;
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(Json(to_str(a) + to_str(b)));
  require_defined(a);
  require_defined(b);
  if (!a.is_data() || !b.is_data())
    eval_fail(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a),
                          type_name(b)));
  return Value(arith(op, a.json(), b.json()));
}

Value negate(const Value& v, bool minus) {
  require_defined(v);
  if (!v.is_data() || !numeric(v.json()))
    eval_fail(fmt::format("bad operand type for unary {}: '{}'", minus ? '-' : '+', type_name(v)));
  const Json& j = v.json();
  if (!minus) return j.is_boolean() ? Value(Json(as_int(j))) : v;
  if (is_float(j)) return Value(Json(-j.get<double>()));
  return Value(Json(sub_int(0, as_int(j))));
}

// ---- json.dumps ----
namespace {

void dump_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  auto escape_cp = [&](char32_t c) {
    if (c >= 0x10000) {
      char32_t v = c - 0x10000;
      out += fmt::format("\\u{:04x}\\u{:04x}", static_cast<unsigned>(0xd800 + (v >> 10)),
                         static_cast<unsigned>(0xdc00 + (v & 0x3ff)));
    } else {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    }
  };
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case U'"': out += "\\\""; break;
      case U'\\': out += "\\\\"; break;
      case U'\n': out += "\\n"; break;
      case U'\r': out += "\\r"; break;
      case U'\t': out += "\\t"; break;
      case U'\b': out += "\\b"; break;
      case U'\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c > 0x7e)) escape_cp(c);
        else utf8_append(out, c);
    }
  }
  out += '"';
}

void dump(std::string& out, const Json& j, const DumpOptions& o, int level) {
  const bool pretty = o.indent.has_value();
  const std::string item_sep = o.separators ? o.separators->first : (pretty ? "," : ", ");
  const std::string key_sep = o.separators ? o.separators->second : ": ";
  auto newline = [&](int lvl) {
    if (!pretty) return;
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += *o.indent;
  };
  switch (j.type()) {
    case Json::value_t::null: out += "null"; return;
    case Json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case Json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
      else out += float_repr(d);
      return;
    }
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: out += to_str(j); return;
    case Json::value_t::string: dump_string(out, j.get_ref<const std::string&>(), o.ensure_ascii); return;
    case Json::value_t::array: {
      if (j.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& e : j) {
        if (!first) out += item_sep;
        first = false;
        newline(level + 1);
        dump(out, e, o, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case Json::value_t::object: {
      if (j.empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<const std::string*, const Json*>> entries;
      for (auto it = j.begin(); it != j.end(); ++it) entries.emplace_back(&it.key(), &it.value());
      if (o.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& a, const auto& b) { return *a.first < *b.first; });
      out += '{';
      bool first = true;
      for (const auto& [k, v] : entries) {
        if (!first) out += item_sep;
        first = false;
        newline(level + 1);
        dump_string(out, *k, o.ensure_ascii);
        out += key_sep;
        dump(out, *v, o, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
    default: eval_fail(fmt::format("Object of type {} is not JSON serializable", type_name(j)));
  }
}

}  // namespace

std::string json_dumps(const Json& j, const DumpOptions& opt) {
  std::string out;
  dump(out, j, opt, 0);
  return out;
}

}  // namespace qllm::jinja
