// qllm_bench_dispatch's two measurements, each in a file of its own; the
// program (bench_dispatch.cpp) runs them per shape on one backend after the
// other and writes the JSON. The passes are driven by dispatch_drivers.h.
//
//   1. dispatch cost per unit (bench_dispatch_cost.cpp): the decode pass
//      timed through the host dispatcher, the device dispatcher and the
//      graphs replayed back to back; its JSON rows and table
//   2. preemption latency per policy (bench_dispatch_preemption.cpp): an LS
//      pass's wait while BE prefill keeps the GPU busy, on each dispatcher;
//      its JSON and table
#pragma once

#include "engine/gpu/host_backend.h"
#include "engine/model/model_desc.h"
#include "profiling/bench_passes.h"
#include "profiling/dispatch_drivers.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qllm::bench {

// Throws qllm::Error when a kernel flagged bad per-step data in either slot
// (the word is cleared first).
void check_slots(gpu::GpuHostBackend& b, const char* what);

// ---- 1. dispatch cost (bench_dispatch_cost.cpp) ----------------------------------

// The decode pass `p` in slot kLs through the host dispatcher, as
// Engine::step_units drives it: `warmup` untimed, then `reps` timed (wall,
// ms, until the tokens are on the host); the error words checked after.
Timing time_host(gpu::GpuHostBackend& b, const PassInput& p, int warmup, int reps);
// The pass's graphs launched back to back with the expert lists `r`
// (bench::replay_pass): what the GPU work alone costs.
Timing time_replay(gpu::GpuHostBackend& b, const PassInput& p, const Routing& r, int warmup, int reps);
// A pass's units: attn per layer, the experts with rows in `r`, the head if it samples.
int units_of(const ModelDesc& d, const Routing& r, const PassInput& p);

// One batch size: the pass's units and its timings on each path.
struct OverheadRow {
  int batch = 0, units = 0;
  Timing host, replay, device;
};

// The dispatch-cost rows as JSON (the goal included); rows whose device
// dispatcher has not run yet say so.
nlohmann::ordered_json overhead_json(const std::vector<OverheadRow>& rows, int context);
// Prints the dispatch-cost table; false when a row missed the goal.
bool print_overhead(const std::string& label, const std::vector<OverheadRow>& rows);

// ---- 2. preemption latency (bench_dispatch_preemption.cpp) -----------------------

// One policy's runs on both dispatchers.
struct PolicyResult {
  std::string policy;
  PreemptionRun host, device;
};

// A policy's latencies (p50, p99, ... and every sample) and BE figures as JSON.
nlohmann::ordered_json preemption_json(const PolicyResult& p);
// Prints a policy's rows of the preemption table from its preemption_json.
void print_preemption(const PolicyResult& p, const nlohmann::ordered_json& j);

}  // namespace qllm::bench
