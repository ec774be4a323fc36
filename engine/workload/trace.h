// Request traces from production services (see shared/data/traces/SOURCES.md):
// Azure LLM inference CSV (Splitwise) and Mooncake JSON lines (FAST'25).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::workload {

enum class TraceFormat : uint8_t { Azure, Mooncake };

struct TraceRow {
  double time_s = 0;  // seconds after the first row
  int64_t prompt = 0;
  int64_t output = 0;
};

// `format` is "azure", "mooncake" or "auto" (by extension: .csv, .jsonl).
TraceFormat trace_format_for(const std::filesystem::path& path, std::string_view format);

// Reads at most `max_rows` rows (0 = all) from the start of the file, times
// relative to the first row. Rows must be sorted by time. Throws qllm::Error
// naming the file, the line and the field.
std::vector<TraceRow> read_trace(const std::filesystem::path& path, TraceFormat format,
                                 int64_t max_rows = 0);

// Seconds since 1970-01-01 of an Azure "YYYY-MM-DD HH:MM:SS.fffffff" stamp,
// split into whole seconds and the fraction so no precision is lost.
struct WallTime {
  int64_t seconds = 0;
  double fraction = 0;
};
WallTime parse_azure_timestamp(std::string_view text, const std::string& where);

// The traces folder: $QLLM_TRACES_DIR when set, else the first
// `shared/data/traces` found in `start` or one of its parents; empty if none.
std::filesystem::path find_traces_dir(const std::filesystem::path& start);

// Where arrivals.trace points: an absolute path as given, else relative to the
// traces folder, else to the workload file's folder. Throws when none exists.
std::filesystem::path resolve_trace_path(const std::string& trace,
                                         const std::filesystem::path& traces_dir,
                                         const std::filesystem::path& spec_dir,
                                         std::string_view what);

}  // namespace qllm::workload
