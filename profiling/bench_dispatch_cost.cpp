// qllm_bench_dispatch, measurement 1: what dispatching one work unit costs
// (bench_dispatch.h; bench_dispatch.cpp runs it per shape).
//
// Dispatch cost (per unit). The decode pass of B sequences (--batches),
// one token each at position --context, in slot 0 with nothing else
// running: --warmup untimed, then --reps passes each timed alone. Wall
// time is the host clock from the start of the pass (host: begin; device:
// publish, which stages the metadata) until its tokens are on the host
// (host: the head unit's readback; device: collect returned the pass).
// Units = attn + expert + head units of the pass (the begin/embedding
// unit is not counted). Besides the two dispatchers:
//   replay   the same graphs launched back to back from the host with the
//            pass's expert lists (bench_passes.h): no decision, no round
//            trip; what the GPU work alone costs
//   span     device dispatcher, device clock: from when the loop took the
//            pass (PassStart) to the end of its head unit
// us/unit = median wall / units; (dispatcher - replay) / units is the
// dispatch cost per unit. The goal: the device dispatcher is not slower
// than the host dispatcher (median wall per pass, at every batch);
// printed with whether it was met, never asserted. The same is measured
// on make-model's tiny preset of the same architecture (2 layers, hidden
// 64: units of a few microseconds of GPU work), where the wall time per
// unit is almost all dispatch (--tiny-reps passes; --skip tiny leaves it
// out).
#include "profiling/bench_dispatch.h"

#include "engine/common/error.h"
#include "kernels/cuda_check.h"
#include "profiling/bench_setup.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <string>
#include <utility>
#include <vector>

namespace qllm::bench {

using json = nlohmann::ordered_json;

// Throws when a kernel flagged bad per-step data in either slot.
void check_slots(gpu::GpuHostBackend& b, const char* what) {
  for (int s = 0; s < b.config().slots; ++s) {
    const int32_t word = b.model().slot(s).error(b.stream(s));
    if (word == 0) continue;
    b.model().slot(s).clear_error(b.stream(s));
    fail("{} (slot {}): {}", what, s, gpu::error_word_meaning(word));
  }
}

// ---- the host dispatcher's backend (dispatch_drivers.h drives both) -------------

// host_engine_pass timed (wall, ms), then the kernels' error words checked.
Timing time_host(gpu::GpuHostBackend& b, const PassInput& p, int warmup, int reps) {
  Timing t;
  for (int i = 0; i < warmup; ++i) bench::host_engine_pass(b, kLs, p);
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Steady::now();
    const int units = bench::host_engine_pass(b, kLs, p);
    t.wall_ms.push_back(ms_between(t0, Steady::now()));
    if (t.units != 0 && units != t.units) t.units_vary = true;
    t.units = units;
  }
  check_slots(b, "host dispatcher, decode pass");
  return t;
}

Timing time_replay(gpu::GpuHostBackend& b, const PassInput& p, const Routing& r, int warmup, int reps) {
  Timing t;
  cudaStream_t s = b.stream(kLs);
  for (int i = 0; i < warmup; ++i) bench::replay_pass(b, p, r);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Steady::now();
    bench::replay_pass(b, p, r);
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
    t.wall_ms.push_back(ms_between(t0, Steady::now()));
  }
  check_slots(b, "replay, decode pass");
  return t;
}

int units_of(const ModelDesc& d, const Routing& r, const PassInput& p) {
  int units = d.layers + (p.sampling.empty() ? 0 : 1);
  for (const auto& l : r) units += int(l.size());
  return units;
}

// ---- reporting -------------------------------------------------------------------

namespace {

json timing_json(const Timing& t, int units) {
  const Stats w = stats_of(t.wall_ms);
  json j = {{"wall_ms", to_json(w)}, {"us_per_unit", units > 0 ? w.median * 1e3 / units : 0.0}};
  if (!t.span_ms.empty()) j["device_span_ms"] = to_json(stats_of(t.span_ms));
  if (t.units_vary) j["units_varied"] = true;
  j["wall_ms_samples"] = t.wall_ms;
  return j;
}

// One row's figures: medians per pass and per unit, and the goal.
struct OverheadFigures {
  Stats host, device, replay, span;
  double host_us = 0, device_us = 0, replay_us = 0;  // median wall / units
  bool measured = false;  // both dispatchers ran
  bool met = false;       // device median <= host median
};

OverheadFigures figures_of(const OverheadRow& r) {
  OverheadFigures f;
  f.host = stats_of(r.host.wall_ms);
  f.device = stats_of(r.device.wall_ms);
  f.replay = stats_of(r.replay.wall_ms);
  f.span = stats_of(r.device.span_ms);
  const double u = r.units > 0 ? double(r.units) : 1.0;
  f.host_us = f.host.median * 1e3 / u;
  f.device_us = f.device.median * 1e3 / u;
  f.replay_us = f.replay.median * 1e3 / u;
  f.measured = f.host.n > 0 && f.device.n > 0;
  f.met = f.measured && f.device.median <= f.host.median;
  return f;
}

}  // namespace

// The dispatch-cost rows as JSON (the goal included); rows whose device
// dispatcher has not run yet say so.
json overhead_json(const std::vector<OverheadRow>& rows, int context) {
  json out = json::array();
  for (const auto& r : rows) {
    const OverheadFigures f = figures_of(r);
    json j = {{"batch", r.batch},
              {"context", context},
              {"units_per_pass", r.units},
              {"host", timing_json(r.host, r.units)},
              {"device", timing_json(r.device, r.units)},
              {"replay", timing_json(r.replay, r.units)},
              {"device_units_per_pass", r.device.units}};
    if (f.measured) {
      j["device_minus_host_us_per_unit"] = f.device_us - f.host_us;
      j["host_over_replay_us_per_unit"] = f.host_us - f.replay_us;
      j["device_over_replay_us_per_unit"] = f.device_us - f.replay_us;
      j["goal_device_not_slower"] = {{"met", f.met}, {"host_median_ms", f.host.median},
                                     {"device_median_ms", f.device.median}};
    } else {
      j["partial"] = "the device dispatcher has not run yet";
    }
    out.push_back(std::move(j));
  }
  return out;
}

// Prints the dispatch-cost table; false when a row missed the goal.
bool print_overhead(const std::string& label, const std::vector<OverheadRow>& rows) {
  fmt::print("{:<28} {:>5} {:>5} {:>17} {:>17} {:>9} {:>9} {:>25} {:>12} {:>22} {}\n", "shape", "batch", "units",
             "host ms med/p90", "device ms med/p90", "replay ms", "dev. span", "us/unit host/device/replay",
             "dev-host us", "over replay host/dev us", "device <= host");
  bool all_met = true;
  for (const auto& r : rows) {
    const OverheadFigures f = figures_of(r);
    all_met = all_met && f.met;
    fmt::print("{:<28} {:>5} {:>5} {:>8.3f} /{:>7.3f} {:>8.3f} /{:>7.3f} {:>9.3f} {:>9.3f} {:>7.2f} /{:>7.2f} "
               "/{:>7.2f} {:>12.2f} {:>10.2f} /{:>10.2f} {}\n",
               label, r.batch, r.units, f.host.median, f.host.p90, f.device.median, f.device.p90, f.replay.median,
               f.span.median, f.host_us, f.device_us, f.replay_us, f.device_us - f.host_us, f.host_us - f.replay_us,
               f.device_us - f.replay_us, f.met ? "met" : "NOT met");
    if (r.device.units != r.units)
      fmt::print("  note: the device dispatcher reported {} units per pass, the host ran {} (dropped timing "
                 "records?)\n",
                 r.device.units, r.units);
    if (r.host.units_vary || r.device.units_vary)
      fmt::print("  note: the units per pass varied between repetitions\n");
  }
  return all_met;
}

}  // namespace qllm::bench
