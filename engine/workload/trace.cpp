#include "engine/workload/trace.h"

#include "engine/common/error.h"
#include "engine/workload/text_fields.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

namespace qllm::workload {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

std::vector<TraceRow> read_azure(std::ifstream& in, const std::string& file, int64_t max_rows) {
  std::string line;
  if (!std::getline(in, line)) fail("{}:1: empty file (expected a CSV header)", file);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != "TIMESTAMP,ContextTokens,GeneratedTokens")
    fail(
        "{}:1: not an Azure LLM inference trace: expected the header "
        "'TIMESTAMP,ContextTokens,GeneratedTokens', got '{}'",
        file, line);
  std::vector<TraceRow> rows;
  WallTime first;
  for (int64_t n = 2; std::getline(in, line); ++n) {
    if (line.empty() || line == "\r") continue;
    if (max_rows > 0 && int64_t(rows.size()) >= max_rows) break;
    const std::string where = fmt::format("{}:{}", file, n);
    const auto f = detail::split_csv(line);
    if (f.size() != 3) fail("{}: expected 3 fields, got {}", where, f.size());
    const WallTime t = parse_azure_timestamp(f[0], where);
    if (rows.empty()) first = t;
    TraceRow r;
    r.time_s = double(t.seconds - first.seconds) + (t.fraction - first.fraction);
    r.prompt = detail::parse_count(f[1], where, "ContextTokens");
    r.output = detail::parse_count(f[2], where, "GeneratedTokens");
    if (!rows.empty() && r.time_s < rows.back().time_s)
      fail("{}: TIMESTAMP goes back in time (rows must be sorted)", where);
    rows.push_back(r);
  }
  return rows;
}

std::vector<TraceRow> read_mooncake(std::ifstream& in, const std::string& file, int64_t max_rows) {
  std::vector<TraceRow> rows;
  std::string line;
  double first_ms = 0;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line == "\r") continue;
    if (max_rows > 0 && int64_t(rows.size()) >= max_rows) break;
    const std::string where = fmt::format("{}:{}", file, n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", where, e.what());
    }
    if (!j.is_object()) fail("{}: expected one JSON object per line", where);
    auto number = [&](const char* key) -> const nlohmann::json& {
      const auto it = j.find(key);
      if (it == j.end()) fail("{}: missing field '{}'", where, key);
      if (!it->is_number()) fail("{}: field '{}' must be a number", where, key);
      return *it;
    };
    auto count = [&](const char* key) -> int64_t {
      const auto& v = number(key);
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        fail("{}: field '{}' must be a non-negative integer", where, key);
      return v.get<int64_t>();
    };
    const double ms = number("timestamp").get<double>();
    if (rows.empty()) first_ms = ms;
    TraceRow r;
    r.time_s = (ms - first_ms) / 1000.0;
    r.prompt = count("input_length");
    r.output = count("output_length");
    if (!rows.empty() && r.time_s < rows.back().time_s)
      fail("{}: timestamp goes back in time (rows must be sorted)", where);
    rows.push_back(r);
  }
  return rows;
}

}  // namespace

WallTime parse_azure_timestamp(std::string_view s, const std::string& where) {
  // YYYY-MM-DD HH:MM:SS[.fraction]
  auto bad = [&]() -> WallTime {
    fail("{}: column 'TIMESTAMP' must look like 'YYYY-MM-DD HH:MM:SS.fffffff', got '{}'", where, s);
  };
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':')
    return bad();
  auto digits = [&](size_t pos, size_t len) -> int64_t {
    int64_t v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') bad();
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  const int64_t y = digits(0, 4), mo = digits(5, 2), d = digits(8, 2);
  const int64_t h = digits(11, 2), mi = digits(14, 2), sec = digits(17, 2);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad();
  WallTime t;
  t.seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
  if (s.size() > 19) {
    if (s[19] != '.' || s.size() == 20) return bad();
    double scale = 0.1;
    for (size_t i = 20; i < s.size(); ++i, scale *= 0.1) t.fraction += double(digits(i, 1)) * scale;
  }
  return t;
}

TraceFormat trace_format_for(const std::filesystem::path& path, std::string_view format) {
  if (format == "azure") return TraceFormat::Azure;
  if (format == "mooncake") return TraceFormat::Mooncake;
  const std::string ext = path.extension().string();
  if (ext == ".csv") return TraceFormat::Azure;
  if (ext == ".jsonl") return TraceFormat::Mooncake;
  fail(
      "{}: cannot tell the trace format from the extension '{}'; set arrivals.trace_format "
      "to azure or mooncake",
      path.string(), ext);
}

std::vector<TraceRow> read_trace(const std::filesystem::path& path, TraceFormat format,
                                 int64_t max_rows) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open trace file", path.string());
  auto rows = format == TraceFormat::Azure ? read_azure(in, path.string(), max_rows)
                                           : read_mooncake(in, path.string(), max_rows);
  if (rows.empty()) fail("{}: the trace has no rows", path.string());
  return rows;
}

std::filesystem::path find_traces_dir(const std::filesystem::path& start) {
  if (const char* env = std::getenv("QLLM_TRACES_DIR"); env && *env) return env;
  std::error_code ec;
  auto dir = std::filesystem::absolute(start, ec);
  if (ec) return {};
  for (;;) {
    const auto candidate = dir / "shared" / "data" / "traces";
    if (std::filesystem::is_directory(candidate, ec)) return candidate;
    if (!dir.has_parent_path() || dir.parent_path() == dir) return {};
    dir = dir.parent_path();
  }
}

std::filesystem::path resolve_trace_path(const std::string& trace,
                                         const std::filesystem::path& traces_dir,
                                         const std::filesystem::path& spec_dir,
                                         std::string_view what) {
  const std::filesystem::path p(trace);
  std::error_code ec;
  if (p.is_absolute()) {
    if (std::filesystem::exists(p, ec)) return p;
  } else {
    if (!traces_dir.empty() && std::filesystem::exists(traces_dir / p, ec)) return traces_dir / p;
    if (!spec_dir.empty() && std::filesystem::exists(spec_dir / p, ec)) return spec_dir / p;
  }
  fail(
      "{}: key 'arrivals.trace': trace file '{}' not found (looked in {}{}); set "
      "QLLM_TRACES_DIR to the traces folder",
      what, trace, traces_dir.empty() ? std::string("no traces folder") : traces_dir.string(),
      spec_dir.empty() ? std::string() : " and " + spec_dir.string());
}

}  // namespace qllm::workload
