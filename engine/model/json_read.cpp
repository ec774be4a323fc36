#include "engine/model/json_read.h"

#include <fstream>

#include "engine/common/error.h"

#include <cmath>

namespace qllm {

std::string describe_json(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return fmt::format("{} ({})", s, v.type_name());
}

JsonReader::JsonReader(const nlohmann::json& obj, std::string_view what)
    : obj_(obj), what_(what) {
  if (!obj.is_object())
    fail("{}: expected a JSON object at the top level, found {}", what_, describe_json(obj));
}

const nlohmann::json* JsonReader::find(std::string_view key) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonReader::has(std::string_view key) const { return find(key) != nullptr; }

void JsonReader::fail_key(std::string_view key, std::string_view msg) const {
  fail("{}: key '{}': {}", what_, key, msg);
}

int64_t JsonReader::as_int(std::string_view key, const nlohmann::json& v, int64_t lo,
                           int64_t hi) const {
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      fail_key(key, fmt::format("expected an integer in [{}, {}], found {}", lo, hi, describe_json(v)));
    x = v.get<int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15)
      fail_key(key, fmt::format("expected an integer, found {}", describe_json(v)));
    x = static_cast<int64_t>(d);
  } else {
    fail_key(key, fmt::format("expected an integer, found {}", describe_json(v)));
  }
  if (x < lo || x > hi)
    fail_key(key, fmt::format("expected an integer in [{}, {}], found {}", lo, hi, x));
  return x;
}

double JsonReader::as_number(std::string_view key, const nlohmann::json& v, double lo,
                             double hi) const {
  if (!v.is_number()) fail_key(key, fmt::format("expected a number, found {}", describe_json(v)));
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    fail_key(key, fmt::format("expected a number in [{}, {}], found {}", lo, hi, d));
  return d;
}

int64_t JsonReader::req_int(std::string_view key, int64_t lo, int64_t hi) const {
  const auto* v = find(key);
  if (!v) fail_key(key, fmt::format("required integer is missing (expected a value in [{}, {}])", lo, hi));
  return as_int(key, *v, lo, hi);
}

double JsonReader::req_number(std::string_view key, double lo, double hi) const {
  const auto* v = find(key);
  if (!v) fail_key(key, "required number is missing");
  return as_number(key, *v, lo, hi);
}

bool JsonReader::req_bool(std::string_view key) const {
  auto b = opt_bool(key);
  if (!b) fail_key(key, "required boolean is missing");
  return *b;
}

std::string JsonReader::req_string(std::string_view key) const {
  auto s = opt_string(key);
  if (!s) fail_key(key, "required string is missing");
  return *s;
}

std::optional<int64_t> JsonReader::opt_int(std::string_view key, int64_t lo, int64_t hi) const {
  const auto* v = find(key);
  if (!v) return std::nullopt;
  return as_int(key, *v, lo, hi);
}

std::optional<double> JsonReader::opt_number(std::string_view key, double lo, double hi) const {
  const auto* v = find(key);
  if (!v) return std::nullopt;
  return as_number(key, *v, lo, hi);
}

std::optional<bool> JsonReader::opt_bool(std::string_view key) const {
  const auto* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) fail_key(key, fmt::format("expected true or false, found {}", describe_json(*v)));
  return v->get<bool>();
}

std::optional<std::string> JsonReader::opt_string(std::string_view key) const {
  const auto* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail_key(key, fmt::format("expected a string, found {}", describe_json(*v)));
  return v->get<std::string>();
}

std::vector<int> JsonReader::int_or_list(std::string_view key, int64_t lo, int64_t hi) const {
  const auto* v = find(key);
  if (!v) return {};
  if (!v->is_array()) return {static_cast<int>(as_int(key, *v, lo, hi))};
  return int_list(key, lo, hi);
}

std::vector<int> JsonReader::int_list(std::string_view key, int64_t lo, int64_t hi) const {
  const auto* v = find(key);
  if (!v) return {};
  if (!v->is_array()) fail_key(key, fmt::format("expected a list of integers, found {}", describe_json(*v)));
  std::vector<int> out;
  for (size_t i = 0; i < v->size(); ++i)
    out.push_back(static_cast<int>(as_int(fmt::format("{}[{}]", key, i), (*v)[i], lo, hi)));
  return out;
}

nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot open for reading", p.string());
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", p.string(), e.what());
  }
}

}  // namespace qllm
