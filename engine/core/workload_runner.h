// Runs a workload (engine/workload) through the engine, on the cpu
// dispatcher or over any UnitBackend (the host dispatcher's:
// engine/gpu/dispatcher.h), and returns one RequestRecord per request, on the
// engine's clock.
//
// Over a UnitBackend the clock is MeasuredClock: each work unit advances it by
// its measured wall time and idle gaps jump to the next arrival, so latencies
// are those of real execution while a run takes only as long as its compute.
// Over a PassBackend (the device dispatcher: units run on their own) it is
// RealTimeClock: requests arrive in real time and the run takes as long as
// the workload's arrival span, at least. Prompts are
// synthetic token ids (seeded per request); no stop token ends a request early
// (max_tokens are generated, as in serving benchmarks).
#pragma once

#include "engine/core/cpu_engine.h"
#include "engine/workload/generator.h"
#include "engine/workload/metrics.h"
#include "engine/workload/workload_spec.h"

#include <vector>

namespace qllm {

struct WorkloadRun {
  std::vector<workload::RequestRecord> records;
  double duration_s = 0;   // engine clock at the end
  int64_t units = 0;       // work units run
  std::vector<UnitRecord> unit_log;  // every unit: slot, cursor, start and end (engine clock)
  int64_t preemptions = 0;
};

// On the cpu dispatcher (a CpuBackend over `model`).
WorkloadRun run_workload(const cpu::ReferenceModel& model, const workload::WorkloadSpec& spec,
                         const workload::GeneratorOptions& gen, const EngineLimits& limits);

// Over `backend`, which holds limits' slots and KV blocks. A backend can serve
// one run after another (each run starts its own engine). On a GPU backend a
// unit's measured time is its host time: launches return at once, and the
// GPU's work is waited for in the units that read results back (attn reads
// the expert counts, head the tokens), so those units carry it.
WorkloadRun run_workload(Backend& backend, const workload::WorkloadSpec& spec,
                         const workload::GeneratorOptions& gen, const EngineLimits& limits);

}  // namespace qllm
