// Reporting a run: a printed table (vLLM benchmark layout, one column per run
// so policies sit side by side) and a JSON file with the spec, every raw
// RequestRecord and the per-class summaries.
#pragma once

#include "engine/workload/metrics.h"
#include "engine/workload/workload_spec.h"

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace qllm::workload {

// One labelled column of the table (e.g. the policy's name).
struct LabelledSummary {
  std::string label;
  RunSummary summary;
};

// The table: duration, then per class (LS, BE, all; a class no run has is
// left out) counts, throughput, TTFT/TPOT/ITL/E2E/queue in ms, SLO attainment,
// goodput and preemptions.
std::string format_summary_table(const std::vector<LabelledSummary>& runs,
                                 std::string_view title = "Serving Benchmark Result");

// JSON of one record; times that never came are null.
nlohmann::json record_to_json(const RequestRecord& r);
// The inverse; throws qllm::Error naming `what` and the field.
RequestRecord record_from_json(const nlohmann::json& j, std::string_view what);

nlohmann::json summary_to_json(const RunSummary& s);

// {"format": "qllm-run/1", "label", "spec", "summary", "records", "extra"}:
// `extra` is free-form (engine config, device, model shape).
nlohmann::json run_to_json(std::string_view label, const WorkloadSpec& spec,
                           const std::vector<RequestRecord>& records, const RunSummary& summary,
                           const nlohmann::json& extra);

// Writes JSON to a file (indented); throws qllm::Error when it cannot.
void write_json_file(const std::filesystem::path& path, const nlohmann::json& j);

// Reads a run file written by run_to_json + write_json_file and returns its
// records; throws qllm::Error naming the file and the record.
std::vector<RequestRecord> read_run_records(const std::filesystem::path& path);

}  // namespace qllm::workload
