// Checked access to tokenizer.json values. Every failure is a qllm::Error
// naming the file, the JSON path of the value and what was expected, e.g.
//   tokenizer.json: model.merges[12]: expected a string "a b" or a pair ["a", "b"]
#pragma once

#include "engine/common/error.h"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace qllm::tokjson {

using Json = nlohmann::json;

// Where a value sits: the file and the path inside it ("model.vocab").
struct Where {
  std::string file;
  std::string path;

  Where key(std::string_view k) const {
    return {file, path.empty() ? std::string(k) : path + "." + std::string(k)};
  }
  Where index(size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
};

[[noreturn]] inline void bad(const Where& w, std::string_view what) {
  fail("{}: {}: {}", w.file, w.path.empty() ? "top level" : w.path, what);
}

inline const char* type_name(const Json& j) { return j.type_name(); }

inline void expect_object(const Json& j, const Where& w) {
  if (!j.is_object()) bad(w, fmt::format("expected an object, got {}", type_name(j)));
}

// The member `k` of object `j` (which must exist).
inline const Json& member(const Json& j, std::string_view k, const Where& w) {
  expect_object(j, w);
  auto it = j.find(k);
  if (it == j.end()) bad(w.key(k), "missing (required key)");
  return *it;
}

// The member `k`, or nullptr when absent or null.
inline const Json* optional_member(const Json& j, std::string_view k) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

inline std::string get_string(const Json& j, std::string_view k, const Where& w) {
  const Json& v = member(j, k, w);
  if (!v.is_string()) bad(w.key(k), fmt::format("expected a string, got {}", type_name(v)));
  return v.get<std::string>();
}

inline std::string get_string_or(const Json& j, std::string_view k, const Where& w,
                                 std::string dflt) {
  const Json* v = optional_member(j, k);
  if (v == nullptr) return dflt;
  if (!v->is_string()) bad(w.key(k), fmt::format("expected a string, got {}", type_name(*v)));
  return v->get<std::string>();
}

inline bool get_bool_or(const Json& j, std::string_view k, const Where& w, bool dflt) {
  const Json* v = optional_member(j, k);
  if (v == nullptr) return dflt;
  if (!v->is_boolean()) bad(w.key(k), fmt::format("expected true or false, got {}", type_name(*v)));
  return v->get<bool>();
}

inline int64_t get_int_or(const Json& j, std::string_view k, const Where& w, int64_t dflt) {
  const Json* v = optional_member(j, k);
  if (v == nullptr) return dflt;
  if (!v->is_number_integer())
    bad(w.key(k), fmt::format("expected an integer, got {}", type_name(*v)));
  return v->get<int64_t>();
}

// A component's "type" tag.
inline std::string type_of(const Json& j, const Where& w) { return get_string(j, "type", w); }

}  // namespace qllm::tokjson
