// Attribute and item access, methods of str/dict/loop values, and the global
// functions (raise_exception, namespace, range, dict).
#include <fmt/format.h>

#include <algorithm>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/chat_template_ast.h"

namespace qllm::jinja {

ArgReader::ArgReader(const Args& args, std::string what, std::vector<std::string_view> params)
    : what_(std::move(what)), slots_(params.size(), nullptr) {
  if (args.pos.size() > params.size())
    eval_fail(fmt::format("{} takes at most {} argument{} ({} given)", what_, params.size(),
                          params.size() == 1 ? "" : "s", args.pos.size()));
  for (std::size_t i = 0; i < args.pos.size(); ++i) slots_[i] = &args.pos[i];
  for (const auto& [name, v] : args.kw) {
    auto it = std::find(params.begin(), params.end(), name);
    if (it == params.end()) eval_fail(fmt::format("{} got an unexpected keyword argument '{}'", what_, name));
    auto idx = static_cast<std::size_t>(it - params.begin());
    if (slots_[idx]) eval_fail(fmt::format("{} got multiple values for argument '{}'", what_, name));
    slots_[idx] = &v;
  }
}

const Value* ArgReader::get(std::size_t i) const { return i < slots_.size() ? slots_[i] : nullptr; }

std::optional<std::string> ArgReader::opt_string(std::size_t i) const {
  const Value* v = get(i);
  if (!v || (v->is_data() && v->json().is_null())) return std::nullopt;
  if (!v->is_data() || !v->json().is_string())
    eval_fail(fmt::format("{}: expected a string argument, got '{}'", what_, type_name(*v)));
  return v->json().get<std::string>();
}

std::string ArgReader::string_or(std::size_t i, const std::string& dflt) const {
  return opt_string(i).value_or(dflt);
}

std::int64_t ArgReader::int_or(std::size_t i, std::int64_t dflt) const {
  const Value* v = get(i);
  if (!v || (v->is_data() && v->json().is_null())) return dflt;
  if (!v->is_data() || !(v->json().is_number_integer() || v->json().is_boolean()))
    eval_fail(fmt::format("{}: expected an integer argument, got '{}'", what_, type_name(*v)));
  return as_int(v->json());
}

bool ArgReader::truthy_or(std::size_t i, bool dflt) const {
  const Value* v = get(i);
  return v ? truthy(*v) : dflt;
}

namespace {

bool is_str_method(const std::string& n) {
  static constexpr std::string_view k[] = {"startswith", "endswith", "split", "rsplit", "strip", "lstrip",
                                           "rstrip", "upper", "lower", "capitalize", "replace", "find",
                                           "rfind", "count", "join", "title", "format", "index", "isdigit",
                                           "isalpha", "isspace", "center", "ljust", "rjust", "zfill",
                                           "splitlines", "partition", "encode", "casefold", "swapcase"};
  return std::find(std::begin(k), std::end(k), n) != std::end(k);
}

bool is_dict_method(const std::string& n) {
  static constexpr std::string_view k[] = {"items", "keys", "values", "get", "pop", "popitem", "update",
                                           "clear", "setdefault", "copy", "fromkeys"};
  return std::find(std::begin(k), std::end(k), n) != std::end(k);
}

bool is_list_method(const std::string& n) {
  static constexpr std::string_view k[] = {"append", "extend", "insert", "pop", "remove", "reverse",
                                           "sort", "clear", "index", "count", "copy"};
  return std::find(std::begin(k), std::end(k), n) != std::end(k);
}

bool is_unsafe(const Json& j, const std::string& n) {
  if (j.is_object())
    return n == "pop" || n == "popitem" || n == "update" || n == "clear" || n == "setdefault";
  if (j.is_array())
    return n == "append" || n == "extend" || n == "insert" || n == "pop" || n == "remove" || n == "reverse" ||
           n == "sort" || n == "clear";
  return false;
}

Value str_method(const std::string& s, const std::string& name, const Args& args) {
  const std::string what = fmt::format("str.{}()", name);
  if (name == "startswith" || name == "endswith") {
    ArgReader a(args, what, {"prefix"});
    const Value* p = a.get(0);
    if (!p || !p->is_data()) eval_fail(fmt::format("{} needs a string or a tuple of strings", what));
    std::vector<std::string> options;
    if (p->json().is_string()) {
      options.push_back(p->json().get<std::string>());
    } else if (p->json().is_array()) {
      for (const auto& o : p->json()) {
        if (!o.is_string()) eval_fail(fmt::format("{}: tuple items must be strings", what));
        options.push_back(o.get<std::string>());
      }
    } else {
      eval_fail(fmt::format("{} arg must be str or a tuple of str, not {}", what, type_name(p->json())));
    }
    for (const auto& o : options) {
      bool hit = name == "startswith" ? s.compare(0, o.size(), o) == 0
                                      : s.size() >= o.size() && s.compare(s.size() - o.size(), o.size(), o) == 0;
      if (hit) return Value(Json(true));
    }
    return Value(Json(false));
  }
  if (name == "split" || name == "rsplit") {
    ArgReader a(args, what, {"sep", "maxsplit"});
    return Value(str_split(s, a.opt_string(0), a.int_or(1, -1), name == "rsplit"));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ArgReader a(args, what, {"chars"});
    return Value(Json(str_strip(s, a.opt_string(0), name != "rstrip", name != "lstrip")));
  }
  if (name == "upper" || name == "lower" || name == "capitalize") {
    ArgReader a(args, what, {});
    return Value(Json(name == "upper" ? str_upper(s) : name == "lower" ? str_lower(s) : str_capitalize(s)));
  }
  if (name == "replace") {
    ArgReader a(args, what, {"old", "new", "count"});
    if (!a.get(0) || !a.get(1)) eval_fail("str.replace() needs 'old' and 'new'");
    return Value(Json(str_replace(s, a.string_or(0, ""), a.string_or(1, ""), a.int_or(2, -1))));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    ArgReader a(args, what, {"sub"});
    if (!a.get(0)) eval_fail(fmt::format("{} needs an argument", what));
    const std::string sub = a.string_or(0, "");
    if (name == "count") {
      if (sub.empty()) return Value(Json(static_cast<std::int64_t>(code_point_count(s)) + 1));
      std::int64_t n = 0;
      for (auto p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(Json(n));
    }
    auto p = name == "find" ? s.find(sub) : s.rfind(sub);
    if (p == std::string::npos) return Value(Json(-1));
    return Value(Json(static_cast<std::int64_t>(code_point_count(std::string_view(s).substr(0, p)))));
  }
  if (name == "join") {
    ArgReader a(args, what, {"iterable"});
    if (!a.get(0)) eval_fail("str.join() needs an argument");
    auto items = iterate(*a.get(0));
    std::string out;
    for (std::size_t i = 0; i < items->size(); ++i) {
      const Json& item = (*items)[i];
      if (!item.is_string())
        eval_fail(fmt::format("sequence item {}: expected str instance, {} found", i, type_name(item)));
      if (i) out += s;
      out += item.get_ref<const std::string&>();
    }
    return Value(Json(std::move(out)));
  }
  eval_fail(fmt::format("unsupported method 'str.{}'", name));
}

Value dict_method(const Value& obj, const std::string& name, const Args& args) {
  const Json& d = obj.json();
  const std::string what = fmt::format("dict.{}()", name);
  if (name == "items" || name == "keys" || name == "values") {
    ArgReader a(args, what, {});
    Json out = Json::array();
    for (auto it = d.begin(); it != d.end(); ++it) {
      if (name == "items") out.push_back(Json::array({it.key(), it.value()}));
      else if (name == "keys") out.push_back(it.key());
      else out.push_back(it.value());
    }
    return Value(std::move(out));
  }
  if (name == "get") {
    ArgReader a(args, what, {"key", "default"});
    if (!a.get(0)) eval_fail("dict.get() needs a key");
    const Value& key = *a.get(0);
    if (key.is_data() && key.json().is_string()) {
      auto it = d.find(key.json().get<std::string>());
      if (it != d.end()) return Value::part_of(obj, *it);
    }
    return a.get(1) ? *a.get(1) : Value(Json(nullptr));
  }
  eval_fail(fmt::format("unsupported method 'dict.{}'", name));
}

}  // namespace

Value get_attr(const Value& obj, const std::string& name, const Describe& desc) {
  if (obj.is_undefined()) require_defined(obj.undefined_name().empty() ? Value::undefined(desc()) : obj);
  if (obj.kind() == Value::Kind::Namespace) {
    const Value* v = obj.ns()->find(name);
    return v ? *v : Value::undefined(desc() + "." + name);
  }
  if (obj.kind() == Value::Kind::Loop) return obj.loop()->attribute(name);
  const Json& j = obj.json();
  if ((j.is_object() && is_dict_method(name)) || (j.is_string() && is_str_method(name)) ||
      (j.is_array() && is_list_method(name))) {
    if (is_unsafe(j, name))
      eval_fail(fmt::format("access to attribute '{}' of '{}' object is unsafe", name, type_name(j)));
    eval_fail(fmt::format("unsupported: method '{}' of '{}' used without calling it", name, type_name(j)));
  }
  if (j.is_object()) {
    auto it = j.find(name);
    if (it != j.end()) return Value::part_of(obj, *it);
  }
  return Value::undefined(desc() + "." + name);
}

Value get_item(const Value& obj, const Value& key, const Describe& desc) {
  if (obj.is_undefined()) require_defined(obj.undefined_name().empty() ? Value::undefined(desc()) : obj);
  auto missing = [&] {
    return Value::undefined(desc() + "[" + (key.is_data() ? repr(key.json()) : to_str(key)) + "]");
  };
  if (!obj.is_data()) {
    if (key.is_data() && key.json().is_string()) return get_attr(obj, key.json().get<std::string>(), desc);
    return missing();
  }
  const Json& j = obj.json();
  const bool int_key = key.is_data() && (key.json().is_number_integer() || key.json().is_boolean());
  if (j.is_object()) {
    if (key.is_data() && key.json().is_string()) {
      auto it = j.find(key.json().get<std::string>());
      if (it != j.end()) return Value::part_of(obj, *it);
    }
    return missing();
  }
  if ((j.is_array() || j.is_string()) && int_key) {
    std::int64_t i = as_int(key.json());
    if (j.is_array()) {
      const auto n = static_cast<std::int64_t>(j.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return missing();
      return Value::part_of(obj, j[static_cast<std::size_t>(i)]);
    }
    std::u32string cps = utf8_decode(j.get_ref<const std::string&>());
    const auto n = static_cast<std::int64_t>(cps.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return missing();
    std::string out;
    utf8_append(out, cps[static_cast<std::size_t>(i)]);
    return Value(Json(std::move(out)));
  }
  return missing();
}

Value call_method(const Value& obj, const std::string& name, const Args& args) {
  require_defined(obj);
  if (obj.kind() == Value::Kind::Loop) {
    if (name != "cycle") eval_fail(fmt::format("unsupported method 'loop.{}'", name));
    if (args.pos.empty() || !args.kw.empty()) eval_fail("loop.cycle() needs positional arguments");
    return args.pos[obj.loop()->index0 % args.pos.size()];
  }
  if (obj.kind() == Value::Kind::Namespace) eval_fail(fmt::format("unsupported method 'namespace.{}'", name));
  const Json& j = obj.json();
  if (is_unsafe(j, name))
    eval_fail(fmt::format("access to attribute '{}' of '{}' object is unsafe", name, type_name(j)));
  if (j.is_string()) return str_method(j.get_ref<const std::string&>(), name, args);
  if (j.is_object() && is_dict_method(name)) return dict_method(obj, name, args);
  if (j.is_array() && (name == "count" || name == "index")) {
    ArgReader a(args, fmt::format("list.{}()", name), {"value"});
    if (!a.get(0)) eval_fail(fmt::format("list.{}() needs an argument", name));
    std::int64_t n = 0;
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!equals(Value::part_of(obj, j[i]), *a.get(0))) continue;
      if (name == "index") return Value(Json(static_cast<std::int64_t>(i)));
      ++n;
    }
    if (name == "index") eval_fail("list.index(x): x not in list");
    return Value(Json(n));
  }
  if (j.is_object()) {
    auto it = j.find(name);
    if (it != j.end()) eval_fail(fmt::format("'{}' is not callable", name));
  }
  eval_fail(fmt::format("unsupported method '{}' on a '{}'", name, type_name(j)));
}

Value call_global(const std::string& name, const Args& args, int line) {
  if (name == "raise_exception") {
    ArgReader a(args, "raise_exception()", {"message"});
    throw ChatTemplateError(line, a.get(0) ? to_str(*a.get(0)) : std::string(), true);
  }
  if (name == "namespace" || name == "dict") {
    if (args.pos.size() > 1) eval_fail(fmt::format("{}() takes at most 1 positional argument", name));
    Json attrs = Json::object();
    if (!args.pos.empty()) {
      const Value& init = args.pos[0];
      if (!init.is_data() || !init.json().is_object())
        eval_fail(fmt::format("{}(): the positional argument must be a dict", name));
      attrs = init.json();
    }
    if (name == "dict") {
      for (const auto& [k, v] : args.kw) {
        if (!v.is_data()) eval_fail(fmt::format("unsupported: a {} inside a dict", type_name(v)));
        attrs[k] = v.json();
      }
      return Value(std::move(attrs));
    }
    auto ns = std::make_shared<Namespace>();
    for (auto it = attrs.begin(); it != attrs.end(); ++it) ns->set(it.key(), Value(it.value()));
    for (const auto& [k, v] : args.kw) ns->set(k, v);
    for (const auto& [k, v] : ns->attrs)
      if (!k.empty() && k[0] == '_') eval_fail(fmt::format("namespace attributes cannot start with '_' ('{}')", k));
    return Value::of_namespace(std::move(ns));
  }
  if (name == "range") {
    if (!args.kw.empty() || args.pos.empty() || args.pos.size() > 3) eval_fail("range() takes 1 to 3 integers");
    std::vector<std::int64_t> v;
    for (const auto& a : args.pos) {
      if (!a.is_data() || !(a.json().is_number_integer() || a.json().is_boolean()))
        eval_fail(fmt::format("range(): '{}' object cannot be interpreted as an integer", type_name(a)));
      v.push_back(as_int(a.json()));
    }
    std::int64_t start = v.size() > 1 ? v[0] : 0, stop = v.size() > 1 ? v[1] : v[0], step = v.size() > 2 ? v[2] : 1;
    if (step == 0) eval_fail("range() arg 3 must not be zero");
    Json out = Json::array();
    for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (out.size() >= 100000)
        eval_fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      out.push_back(i);
    }
    return Value(std::move(out));
  }
  eval_fail(fmt::format("unsupported function '{}'", name));
}

}  // namespace qllm::jinja
