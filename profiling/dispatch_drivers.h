// How qllm_bench_dispatch drives passes through the two dispatchers'
// backends without an Engine: the host dispatcher's (a UnitBackend) unit by
// unit as Engine::step_units does (before every unit the policy, pick_slot,
// chooses the slot; the slot runs its cursor's unit; sched::advance steps
// it), the device dispatcher's (a PassBackend) by publish and collect. Plain
// engine interfaces, so the same code runs over the CPU backends.
//
//   const bench::Timing t = bench::time_device_passes(dev, pass, 5, 50, next_id);
//   const bench::PreemptionRun r = bench::host_preemption(host, sched::Policy::PriorityExpert, ls, be, opts);
//
// Slots: kLs (0) takes LS passes, kBe (1) BE passes.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/core/unit_backend.h"
#include "profiling/bench_passes.h"

#include <chrono>
#include <cstdint>
#include <vector>

namespace qllm::bench {

inline constexpr int kLs = 0, kBe = 1, kSlots = 2;
inline constexpr double kPassTimeout = 30.0;  // seconds a pass may take before the driver gives up

using Steady = std::chrono::steady_clock;
double ms_between(Steady::time_point a, Steady::time_point b);

// The pass's KV blocks moved up by `first` (the spans keep pointing into p.tables).
void offset_blocks(PassInput& p, int first);

// ---- one pass at a time ----------------------------------------------------------

// One pass through a UnitBackend alone in `slot`, as Engine::step_units drives
// it. Returns the units run (attn, expert, head).
int host_engine_pass(UnitBackend& b, int slot, const PassInput& p);

// Wall times of repeated passes (ms) and their units per pass.
struct Timing {
  std::vector<double> wall_ms;
  std::vector<double> span_ms;  // device: PassStart -> end of the head unit (device clock)
  int units = 0;
  bool units_vary = false;
};

// `p` in slot kLs, `warmup` untimed then `reps` timed, each from publish
// (which stages the metadata) until collect() returned the pass; span_ms from
// its PassStart to its last unit's end (device clock). Attaches to the backend
// with the default policy and a clock of its own. Pass ids from `next_id`.
Timing time_device_passes(PassBackend& b, const PassInput& p, int warmup, int reps, uint64_t& next_id);

// ---- preemption latency ------------------------------------------------------------

struct PreemptionOptions {
  int warmup = 5, samples = 200;            // LS passes: untimed, then kept
  double delay_lo_ms = 0.2, delay_hi_ms = 2.0;  // an LS pass arrives this long after the previous one ended
  uint64_t seed = 0;
};

struct Sample {
  double arrival_s = 0;     // the moment drawn
  double noticed_s = 0;     // host: the driver saw the arrival between units; device: right before publish
  double first_s = -1;      // host: the first attn unit's launch; device: its start (mapped, then re-mapped)
  double taken_s = -1;      // device: PassStart (mapped, then re-mapped)
  double offset_s = 0;      // device: the re-mapping subtracted
  bool be_running = false;  // a BE pass had started and not finished when the LS pass arrived
};

struct PreemptionRun {
  std::vector<Sample> samples;
  int64_t be_passes = 0;    // BE passes finished while sampling
  double seconds = 0;       // sampling time
  std::vector<double> be_pass_ms;  // host: begin -> head; device: PassStart -> head end (device clock)
  int missing_first = 0;    // device: the LS pass's first UnitRecord was dropped
  int64_t be_preempted = 0; // BE passes that an LS unit ran in the middle of (none under fcfs-iteration)
  double offset_spread_s = 0;
};

// BE prefill passes `be` back to back in kBe, LS passes `ls` in kLs arriving
// as PreemptionOptions says, until o.samples are kept. Host: arrival -> the
// first attn unit's launch, driven as Engine::step_units with `policy`.
PreemptionRun host_preemption(UnitBackend& b, sched::Policy policy, const PassInput& ls, const PassInput& be,
                              const PreemptionOptions& o);
// Device: attaches with `policy` (no BE promotion) and a clock of its own;
// publish -> the first attn unit's start (re-mapped per sample, see
// bench_dispatch_preemption.cpp) and PassStart -> that start.
PreemptionRun device_preemption(PassBackend& b, sched::Policy policy, const PassInput& ls, const PassInput& be,
                                const PreemptionOptions& o, uint64_t& next_id);

}  // namespace qllm::bench
