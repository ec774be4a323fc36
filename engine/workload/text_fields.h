// Small helpers for reading the trace and length files: one line at a time,
// comma-separated fields, token counts with errors naming file and line.
#pragma once

#include "engine/common/error.h"

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::workload::detail {

// Splits a CSV line at commas (the files read here have no quoted fields) and
// drops a trailing '\r'.
inline std::vector<std::string_view> split_csv(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = line.find(',', start);
    out.push_back(line.substr(start, comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// A non-negative integer field; `where` is "file:line", `column` its name.
inline int64_t parse_count(std::string_view text, const std::string& where,
                           std::string_view column) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0)
    fail("{}: column '{}' must be a non-negative integer, got '{}'", where, column, text);
  return v;
}

}  // namespace qllm::workload::detail
