// The engine's per-unit log as a trace for Perfetto (ui.perfetto.dev) or
// chrome://tracing: the Chrome Trace Event JSON format,
//   {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}
// with every timestamp in microseconds of the engine clock (seconds x 1e6,
// kept to whole nanoseconds so that adjacent units share an edge exactly).
//
// Layout (one process, pid 1, named "qllm engine (<dispatcher>, <policy>)"):
//   - track "requests" (first): instant events "<class> arrival",
//     "<class> first token" and "<class> finish" per request, args {id, class,
//     ...}; category "request";
//   - counter tracks "LS waiting" and "BE waiting" (arg "requests"): requests
//     that have arrived and not yet had any work scheduled;
//   - one track per slot, "slot N (LS)" / "slot N (BE)", in slot order: each
//     unit is a complete event named "attn L3", "expert L3 #1" (#: the
//     position among the layer's experts that received tokens, the cursor's
//     expert field) or "head", category its kind, args {slot, class, layer,
//     expert, pass, and pass_id where the backend names the unit's pass (the
//     device dispatcher)}; layer and expert are -1 where they do not apply
//     (expert of an attn unit, both for the head). pass counts the slot's
//     passes from 0; a pass ends with its head unit;
//   - a preempted pass: when a unit that is not a head is followed by another
//     slot's unit, the slot's track gets a slice "preempted" (category
//     "preemption") from the end of that unit to the start of the pass's next
//     unit, args {slot, pass, by_slot (the slot that ran first), units (how
//     many other units ran meanwhile)}.
// Slices on one track never overlap: the engine runs one unit at a time.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/core/cpu_engine.h"
#include "engine/core/request.h"
#include "engine/workload/metrics.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace qllm::trace {

// What the trace says about one request. Times on the engine clock, seconds;
// negative or NaN: did not happen (that instant is left out).
struct RequestTimes {
  uint64_t id = 0;
  sched::PriorityClass cls = sched::PriorityClass::BE;
  double arrival_s = -1, first_scheduled_s = -1, first_token_s = -1, finish_s = -1;
  int64_t prompt_tokens = 0, output_tokens = 0, preemptions = 0;
  // How it ended: "stop", "length" or "cancelled" (engine timings), "ok" or
  // the error (workload records), "" while it runs.
  std::string finish;
};

RequestTimes from_timing(const RequestTiming& t);
RequestTimes from_record(const workload::RequestRecord& r);

struct TraceInfo {
  std::string dispatcher = "cpu";
  std::string policy;
  int ls_slots = 1, be_slots = 1;  // slots [0, ls_slots) are LS, the rest BE
  nlohmann::json other = nlohmann::json::object();  // extra "otherData" (model, workload...)
};

// The whole trace as JSON.
nlohmann::json build_trace(const TraceInfo& info, const std::vector<UnitRecord>& units,
                           const std::vector<RequestTimes>& requests);

// Writes the trace (compact JSON). Throws qllm::Error when the file cannot be
// written.
void write_trace(const std::filesystem::path& path, const nlohmann::json& trace);

// Where `qllm run` writes the trace of one policy: PREFIX-<policy>.json, a
// trailing ".json" of the prefix dropped first ("t.json" -> "t-fcfs-iteration.json").
std::filesystem::path trace_path_for(const std::string& prefix, const std::string& policy);

}  // namespace qllm::trace
