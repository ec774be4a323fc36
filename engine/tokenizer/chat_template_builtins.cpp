// Filters and tests, with Jinja2's semantics (jinja2/filters.py, tests.py) and
// transformers' tojson (json.dumps with ensure_ascii=False).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "engine/tokenizer/chat_template_ast.h"

namespace qllm::jinja {
namespace {

bool numeric(const Json& j) { return j.is_number() || j.is_boolean(); }

Value str_value(std::string s) { return Value(Json(std::move(s))); }

Json data_or_undefined(const Value& v) {
  if (v.is_data()) return v.json();
  if (v.is_undefined()) return Json(Json::value_t::discarded);
  eval_fail(fmt::format("unsupported: a {} inside a list", type_name(v)));
}

Json list_of(const Value& v) { return *iterate(v); }

// Jinja2's make_attrgetter: "a.b.0" looks up each part (item first, then attribute).
Value attribute_path(const Value& item, const std::string& path) {
  Value cur = item;
  std::size_t start = 0;
  while (true) {
    auto dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    Value key = digits ? Value(Json(std::stoll(part))) : Value(Json(part));
    if (cur.is_undefined()) return cur;
    cur = get_item(cur, key, [] { return std::string("item"); });
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value filter_tojson(const Value& v, const Args& args) {
  ArgReader a(args, "filter 'tojson'", {"ensure_ascii", "indent", "separators", "sort_keys"});
  if (!v.is_data()) eval_fail(fmt::format("Object of type {} is not JSON serializable", type_name(v)));
  DumpOptions o;
  o.ensure_ascii = a.truthy_or(0, false);
  if (const Value* ind = a.get(1); ind && !(ind->is_data() && ind->json().is_null())) {
    if (ind->is_data() && ind->json().is_string()) {
      o.indent = ind->json().get<std::string>();
    } else {
      std::int64_t n = a.int_or(1, 0);
      o.indent = std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, std::min<std::int64_t>(n, 64))), ' ');
    }
  }
  if (const Value* sep = a.get(2); sep && !(sep->is_data() && sep->json().is_null())) {
    if (!sep->is_data() || !sep->json().is_array() || sep->json().size() != 2 || !sep->json()[0].is_string() ||
        !sep->json()[1].is_string())
      eval_fail("filter 'tojson': separators must be a pair of strings");
    o.separators = std::make_pair(sep->json()[0].get<std::string>(), sep->json()[1].get<std::string>());
  }
  o.sort_keys = a.truthy_or(3, false);
  return str_value(json_dumps(v.json(), o));
}

Value filter_length(const Value& v) {
  if (v.is_undefined()) return Value(Json(0));
  if (v.is_data()) {
    const Json& j = v.json();
    if (j.is_string()) return Value(Json(static_cast<std::int64_t>(code_point_count(j.get_ref<const std::string&>()))));
    if (j.is_array() || j.is_object()) return Value(Json(static_cast<std::int64_t>(j.size())));
  }
  if (v.kind() == Value::Kind::Loop) return Value(Json(static_cast<std::int64_t>(v.loop()->items->size())));
  eval_fail(fmt::format("object of type '{}' has no len()", type_name(v)));
}

Value filter_join(const Value& v, const Args& args) {
  ArgReader a(args, "filter 'join'", {"d", "attribute"});
  const std::string sep = a.get(0) ? to_str(*a.get(0)) : std::string();
  auto attr = a.opt_string(1);
  auto items = iterate(v);
  Value owner = Value::shared(items);
  std::string out;
  for (std::size_t i = 0; i < items->size(); ++i) {
    if (i) out += sep;
    Value item = Value::part_of(owner, (*items)[i]);
    out += to_str(attr ? attribute_path(item, *attr) : item);
  }
  return str_value(std::move(out));
}

Value filter_first_last(const Value& v, bool first) {
  auto items = iterate(v);
  if (items->empty()) return Value::undefined(first ? "first item" : "last item");
  return Value::part_of(Value::shared(items), first ? items->front() : items->back());
}

Value filter_int(const Value& v, const Args& args) {
  ArgReader a(args, "filter 'int'", {"default", "base"});
  Value dflt = a.get(0) ? *a.get(0) : Value(Json(0));
  require_defined(v);
  if (!v.is_data()) return dflt;
  const Json& j = v.json();
  if (numeric(j)) return Value(Json(j.is_number_float() ? static_cast<std::int64_t>(std::trunc(j.get<double>())) : as_int(j)));
  if (!j.is_string()) return dflt;
  std::string s = str_strip(j.get_ref<const std::string&>(), std::nullopt, true, true);
  if (s.empty()) return dflt;
  char* end = nullptr;
  errno = 0;
  long long iv = std::strtoll(s.c_str(), &end, static_cast<int>(a.int_or(1, 10)));
  if (end && *end == '\0' && errno == 0) return Value(Json(static_cast<std::int64_t>(iv)));
  double dv = std::strtod(s.c_str(), &end);
  if (end && *end == '\0' && std::isfinite(dv)) return Value(Json(static_cast<std::int64_t>(std::trunc(dv))));
  return dflt;
}

Value filter_float(const Value& v, const Args& args) {
  ArgReader a(args, "filter 'float'", {"default"});
  Value dflt = a.get(0) ? *a.get(0) : Value(Json(0.0));
  require_defined(v);
  if (!v.is_data()) return dflt;
  const Json& j = v.json();
  if (numeric(j)) return Value(Json(as_double(j)));
  if (!j.is_string()) return dflt;
  std::string s = str_strip(j.get_ref<const std::string&>(), std::nullopt, true, true);
  char* end = nullptr;
  double dv = std::strtod(s.c_str(), &end);
  if (!s.empty() && end && *end == '\0') return Value(Json(dv));
  return dflt;
}

// select / reject / selectattr / rejectattr
Value filter_select(const std::string& name, const Value& v, const Args& args) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep_if = name == "select" || name == "selectattr";
  if (!args.kw.empty()) eval_fail(fmt::format("filter '{}' takes no keyword arguments", name));
  std::size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (args.pos.empty() || !args.pos[0].is_data() || !args.pos[0].json().is_string())
      eval_fail(fmt::format("filter '{}' needs an attribute name", name));
    attr = args.pos[0].json().get<std::string>();
    next = 1;
  }
  std::optional<std::string> test;
  if (args.pos.size() > next) {
    if (!args.pos[next].is_data() || !args.pos[next].json().is_string())
      eval_fail(fmt::format("filter '{}': the test must be named by a string", name));
    test = args.pos[next].json().get<std::string>();
    ++next;
  }
  Args test_args;
  test_args.pos.assign(args.pos.begin() + static_cast<std::ptrdiff_t>(next), args.pos.end());
  auto items = iterate(v);
  Value owner = Value::shared(items);
  Json out = Json::array();
  for (const auto& item : *items) {
    Value subject = Value::part_of(owner, item);
    if (by_attr) subject = attribute_path(subject, attr);
    bool pass = test ? apply_test(*test, subject, test_args) : truthy(subject);
    if (pass == keep_if) out.push_back(item);
  }
  return Value(std::move(out));
}

Value filter_map(const Value& v, const Args& args) {
  auto items = iterate(v);
  Value owner = Value::shared(items);
  Json out = Json::array();
  const Value* attr = nullptr;
  const Value* dflt = nullptr;
  for (const auto& [k, val] : args.kw) {
    if (k == "attribute") attr = &val;
    else if (k == "default") dflt = &val;
    else eval_fail(fmt::format("filter 'map' got an unexpected keyword argument '{}'", k));
  }
  if (attr) {
    if (!args.pos.empty()) eval_fail("filter 'map' takes either a filter name or attribute=");
    if (!attr->is_data() || !attr->json().is_string()) eval_fail("filter 'map': attribute must be a string");
    for (const auto& item : *items) {
      Value r = attribute_path(Value::part_of(owner, item), attr->json().get<std::string>());
      if (r.is_undefined() && dflt) r = *dflt;
      out.push_back(data_or_undefined(r));
    }
    return Value(std::move(out));
  }
  if (dflt) eval_fail("filter 'map': default= needs attribute=");
  if (args.pos.empty() || !args.pos[0].is_data() || !args.pos[0].json().is_string())
    eval_fail("filter 'map' needs a filter name or attribute=");
  const std::string filter = args.pos[0].json().get<std::string>();
  Args rest;
  rest.pos.assign(args.pos.begin() + 1, args.pos.end());
  for (const auto& item : *items) {
    out.push_back(data_or_undefined(apply_filter(filter, Value::part_of(owner, item), rest)));
  }
  return Value(std::move(out));
}

Value filter_items(const Value& v) {
  if (v.is_undefined()) return Value(Json::array());
  if (!v.is_data() || !v.json().is_object()) eval_fail("Can only get item pairs from a mapping.");
  Json out = Json::array();
  for (auto it = v.json().begin(); it != v.json().end(); ++it) out.push_back(Json::array({it.key(), it.value()}));
  return Value(std::move(out));
}

}  // namespace

bool is_jinja_filter(const std::string& name) {
  static constexpr std::string_view k[] = {
      "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
      "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
      "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
      "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
      "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
      "wordwrap", "xmlattr"};
  return std::find(std::begin(k), std::end(k), name) != std::end(k);
}

bool is_jinja_test(const std::string& name) {
  static constexpr std::string_view k[] = {
      "!=", "<", "<=", "==", ">", ">=", "boolean", "callable", "defined", "divisibleby", "eq", "equalto",
      "escaped", "even", "false", "filter", "float", "ge", "greaterthan", "gt", "in", "integer", "iterable",
      "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas", "sequence",
      "string", "test", "true", "undefined", "upper"};
  return std::find(std::begin(k), std::end(k), name) != std::end(k);
}

Value apply_filter(const std::string& name, const Value& v, const Args& args) {
  auto no_args = [&] { ArgReader(args, fmt::format("filter '{}'", name), {}); };
  if (name == "length" || name == "count") {
    no_args();
    return filter_length(v);
  }
  if (name == "tojson") return filter_tojson(v, args);
  if (name == "string") {
    no_args();
    return str_value(to_str(v));
  }
  if (name == "trim") {
    ArgReader a(args, "filter 'trim'", {"chars"});
    return str_value(str_strip(to_str(v), a.opt_string(0), true, true));
  }
  if (name == "upper" || name == "lower" || name == "capitalize") {
    no_args();
    const std::string s = to_str(v);
    return str_value(name == "upper" ? str_upper(s) : name == "lower" ? str_lower(s) : str_capitalize(s));
  }
  if (name == "join") return filter_join(v, args);
  if (name == "default" || name == "d") {
    ArgReader a(args, fmt::format("filter '{}'", name), {"default_value", "boolean"});
    const bool use_default = v.is_undefined() || (a.truthy_or(1, false) && !truthy(v));
    if (!use_default) return v;
    return a.get(0) ? *a.get(0) : str_value("");
  }
  if (name == "first" || name == "last") {
    no_args();
    return filter_first_last(v, name == "first");
  }
  if (name == "list") {
    no_args();
    return Value(list_of(v));
  }
  if (name == "reverse") {
    no_args();
    if (v.is_data() && v.json().is_string()) {
      std::u32string cps = utf8_decode(v.json().get_ref<const std::string&>());
      std::reverse(cps.begin(), cps.end());
      return str_value(utf8_encode(cps));
    }
    Json items = list_of(v);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "replace") {
    ArgReader a(args, "filter 'replace'", {"old", "new", "count"});
    if (!a.get(0) || !a.get(1)) eval_fail("filter 'replace' needs 'old' and 'new'");
    return str_value(str_replace(to_str(v), to_str(*a.get(0)), to_str(*a.get(1)), a.int_or(2, -1)));
  }
  if (name == "int") return filter_int(v, args);
  if (name == "float") return filter_float(v, args);
  if (name == "abs") {
    no_args();
    require_defined(v);
    if (!v.is_data() || !numeric(v.json())) eval_fail(fmt::format("bad operand type for abs(): '{}'", type_name(v)));
    const Json& j = v.json();
    if (j.is_number_float()) return Value(Json(std::fabs(j.get<double>())));
    std::int64_t i = as_int(j);
    if (i == std::numeric_limits<std::int64_t>::min()) eval_fail("integer overflow");
    return Value(Json(i < 0 ? -i : i));
  }
  if (name == "items") {
    no_args();
    return filter_items(v);
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr")
    return filter_select(name, v, args);
  if (name == "map") return filter_map(v, args);
  eval_fail(fmt::format("{} filter '{}'", is_jinja_filter(name) ? "unsupported" : "unknown", name));
}

namespace {

// The tests that take no argument; nullopt for other names.
std::optional<bool> unary_test(const std::string& name, const Value& v) {
  const Json* j = v.is_data() ? &v.json() : nullptr;
  auto is = [j](auto pred) { return j != nullptr && pred(*j); };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return is([](const Json& x) { return x.is_null(); });
  if (name == "string") return is([](const Json& x) { return x.is_string(); });
  if (name == "number") return is(numeric);  // bool is a Number in Python
  if (name == "integer") return is([](const Json& x) { return x.is_number_integer(); });
  if (name == "float") return is([](const Json& x) { return x.is_number_float(); });
  if (name == "boolean") return is([](const Json& x) { return x.is_boolean(); });
  if (name == "true") return is([](const Json& x) { return x.is_boolean() && x.get<bool>(); });
  if (name == "false") return is([](const Json& x) { return x.is_boolean() && !x.get<bool>(); });
  if (name == "mapping") return is([](const Json& x) { return x.is_object(); });
  // Jinja2's undefined iterates (as empty) and has __len__ and __getitem__.
  auto container = [](const Json& x) { return x.is_string() || x.is_array() || x.is_object(); };
  if (name == "iterable") return v.is_undefined() || v.kind() == Value::Kind::Loop || is(container);
  if (name == "sequence") return v.is_undefined() || is(container);
  return std::nullopt;
}

// `is sameas`: Python identity. None, True, False and small ints are singletons;
// otherwise only the same object (one variable read twice) is.
bool same_as(const Value& v, const Value& o) {
  if (v.kind() != o.kind()) return false;
  if (v.kind() == Value::Kind::Undefined) return false;
  if (!v.is_data()) return equals(v, o);
  const Json& a = v.json();
  const Json& b = o.json();
  if (&a == &b) return true;
  if (a.is_null() || a.is_boolean()) return a.type() == b.type() && a == b;
  if (a.is_number_integer() && b.is_number_integer()) {
    const std::int64_t x = as_int(a);
    return x >= -5 && x <= 256 && x == as_int(b);
  }
  return false;
}

}  // namespace

bool apply_test(const std::string& name, const Value& v, const Args& args) {
  const std::string what = fmt::format("test '{}'", name);
  if (auto r = unary_test(name, v)) {
    ArgReader(args, what, {});
    return *r;
  }
  if (name == "odd" || name == "even") {
    ArgReader(args, what, {});
    const bool odd = truthy(binary_op("%", v, Value(Json(2))));
    return name == "odd" ? odd : !odd;
  }
  static constexpr std::string_view kBinary[] = {"divisibleby", "eq", "equalto", "==", "ne", "!=", "lt",
                                                 "lessthan", "<", "le", "<=", "gt", "greaterthan", ">",
                                                 "ge", ">=", "in", "sameas"};
  if (std::find(std::begin(kBinary), std::end(kBinary), name) == std::end(kBinary))
    eval_fail(fmt::format("{} test '{}'", is_jinja_test(name) ? "unsupported" : "unknown", name));
  ArgReader a(args, what, {"other"});
  if (!a.get(0)) eval_fail(fmt::format("{} needs an argument", what));
  const Value& other = *a.get(0);
  if (name == "divisibleby") return !truthy(binary_op("%", v, other));
  if (name == "eq" || name == "equalto" || name == "==") return compare("==", v, other);
  if (name == "ne" || name == "!=") return compare("!=", v, other);
  if (name == "lt" || name == "lessthan" || name == "<") return compare("<", v, other);
  if (name == "le" || name == "<=") return compare("<=", v, other);
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(">", v, other);
  if (name == "ge" || name == ">=") return compare(">=", v, other);
  if (name == "in") return contains(other, v);
  return same_as(v, other);
}

}  // namespace qllm::jinja
