// Parsing and checking the scalar values of configuration keys (engine
// configs, workload specs). Every error is a qllm::Error reading
// "<where>: key '<key>' ...", where `where` is "file:line".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

int64_t parse_key_int(const std::string& text, std::string_view where, std::string_view key);
// A finite decimal number.
double parse_key_number(const std::string& text, std::string_view where, std::string_view key);
// "true" or "false".
bool parse_key_bool(const std::string& text, std::string_view where, std::string_view key);
// lo <= x <= hi (`text` is the value as written, for the message).
void check_key_range(double x, double lo, double hi, const std::string& text, std::string_view where,
                     std::string_view key);
// `text` is one of `choices` (no check when choices is empty).
void check_key_choice(const std::string& text, const std::vector<std::string_view>& choices,
                      std::string_view where, std::string_view key);
// A number as it is written back into YAML (shortest round-trip form).
std::string render_key_number(double x);

}  // namespace qllm
