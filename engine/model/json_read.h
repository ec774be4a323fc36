// Typed reads from a JSON object with errors that name the file and the key.
// Used by the config.json, generation_config.json and index parsers.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

class JsonReader {
 public:
  // `obj` must outlive the reader; throws qllm::Error when it is not an object.
  JsonReader(const nlohmann::json& obj, std::string_view what);

  // Present and not null.
  bool has(std::string_view key) const;
  const nlohmann::json* find(std::string_view key) const;  // null when absent or null
  const std::string& what() const { return what_; }

  // Required values: throw when absent, null, mistyped or out of [lo, hi].
  int64_t req_int(std::string_view key, int64_t lo, int64_t hi) const;
  double req_number(std::string_view key, double lo, double hi) const;
  bool req_bool(std::string_view key) const;
  std::string req_string(std::string_view key) const;

  // Optional values: nullopt when absent or null; throw when mistyped.
  std::optional<int64_t> opt_int(std::string_view key, int64_t lo, int64_t hi) const;
  std::optional<double> opt_number(std::string_view key, double lo, double hi) const;
  std::optional<bool> opt_bool(std::string_view key) const;
  std::optional<std::string> opt_string(std::string_view key) const;
  // An int or a list of ints (eos_token_id); empty when absent or null.
  std::vector<int> int_or_list(std::string_view key, int64_t lo, int64_t hi) const;
  // A list of ints; empty when absent or null.
  std::vector<int> int_list(std::string_view key, int64_t lo, int64_t hi) const;

  // "<what>: key 'k': <msg>" as a qllm::Error.
  [[noreturn]] void fail_key(std::string_view key, std::string_view msg) const;

 private:
  int64_t as_int(std::string_view key, const nlohmann::json& v, int64_t lo, int64_t hi) const;
  double as_number(std::string_view key, const nlohmann::json& v, double lo, double hi) const;
  const nlohmann::json& obj_;
  std::string what_;
};

// Reads and parses a JSON file; qllm::Error naming the path when it cannot be
// opened or is not valid JSON.
nlohmann::json read_json_file(const std::filesystem::path& p);

// Short rendering of a JSON value for messages: `"abc" (string)`, `1.5 (number)`.
std::string describe_json(const nlohmann::json& v);

}  // namespace qllm
