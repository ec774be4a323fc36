// qllm_bench_dispatch, measurement 2: how long a latency-sensitive pass
// waits for the GPU while best-effort prefill keeps it busy, per policy
// (bench_dispatch.h; bench_dispatch.cpp runs it per shape; the drivers:
// dispatch_drivers.h).
//
// Preemption latency, per policy (--policies). Slot 1 runs BE prefill
// passes back to back (one chunk of --be-prompt rows each, republished as
// soon as the previous one is reported); slot 0 gets an LS decode pass
// (--ls-batch sequences at position --context) a random --delay-ms after
// the previous LS pass ended, --samples times (after --warmup untimed
// ones). Per sample:
//   host     arrival (the moment drawn) -> the host thread launches the
//            LS pass's first attn unit (host clock). The host thread is
//            blocked in the BE pass's attn units (each reads the expert
//            counts back), so an arrival is noticed between units; the
//            noticing delay is reported too. A launch is not a start: the
//            GPU may start the unit later (host clock only; no GPU time
//            stamps on this path).
//   device   publish -> the LS pass's first attn unit starts on the GPU:
//            a host time stamp right before publish() against the unit's
//            UnitRecord (device globaltimer mapped to the host clock), and
//            PassStart -> first attn unit (PassResult.taken_s; device
//            clock only, no mapping error). Both include the begin
//            (embedding) unit, which has no UnitRecord.
// The mapping: LoopBackend fixes one offset at its first drain after
// attach(); the program (device_preemption) maps again, per sample, which
// also follows any drift between the GPU's clock and the host's: for every
// collect() it takes (latest record end - host time after the drain); the maximum over
// the calls made while the sample's LS pass ran bounds the offset (a
// record is read after it is written), and mapped times are then late by
// at most the age of the freshest record at its drain (microseconds:
// latencies are over-, never under-estimated). The spread of those
// offsets over the run is reported.
// p50 / p99 per policy and dispatcher, with how many samples found a BE
// pass running; BE passes per second show what LS work cost BE, and the
// BE passes an LS unit ran in the middle of show the policy at work (none
// under fcfs-iteration).
#include "profiling/bench_dispatch.h"

#include "profiling/bench_setup.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace qllm::bench {

using json = nlohmann::ordered_json;

namespace {

json latency_json(const std::vector<double>& us) { return to_json(stats_of(us)); }

}  // namespace

json preemption_json(const PolicyResult& p) {
  auto host_lat = [&](auto f) {
    std::vector<double> v;
    for (const auto& s : p.host.samples) v.push_back(f(s) * 1e6);
    return v;
  };
  auto dev_lat = [&](auto f) {
    std::vector<double> v;
    for (const auto& s : p.device.samples) v.push_back(f(s) * 1e6);
    return v;
  };
  auto be_running = [](const PreemptionRun& r) {
    int n = 0;
    for (const auto& s : r.samples) n += s.be_running;
    return n;
  };
  const auto h_first = host_lat([](const Sample& s) { return s.first_s - s.arrival_s; });
  const auto h_notice = host_lat([](const Sample& s) { return s.noticed_s - s.arrival_s; });
  const auto d_pub = dev_lat([](const Sample& s) { return s.first_s - s.noticed_s; });
  const auto d_taken = dev_lat([](const Sample& s) { return s.first_s - s.taken_s; });
  const auto d_pub_taken = dev_lat([](const Sample& s) { return s.taken_s - s.noticed_s; });
  const auto d_lag = dev_lat([](const Sample& s) { return s.noticed_s - s.arrival_s; });
  const auto d_arr = dev_lat([](const Sample& s) { return s.first_s - s.arrival_s; });
  json host = {{"arrival_to_first_unit_launch_us", latency_json(h_first)},
               {"arrival_to_noticed_us", latency_json(h_notice)},
               {"samples", p.host.samples.size()},
               {"samples_with_be_running", be_running(p.host)},
               {"be_passes_per_s", p.host.seconds > 0 ? double(p.host.be_passes) / p.host.seconds : 0.0},
               {"be_passes_preempted", p.host.be_preempted},
               {"be_pass_ms", to_json(stats_of(p.host.be_pass_ms))},
               {"raw_us", {{"arrival_to_first_unit_launch", h_first}, {"arrival_to_noticed", h_notice}}}};
  json device = {{"publish_to_first_unit_us", latency_json(d_pub)},
                 {"pass_start_to_first_unit_us", latency_json(d_taken)},
                 {"publish_to_pass_start_us", latency_json(d_pub_taken)},
                 {"arrival_to_first_unit_us", latency_json(d_arr)},
                 {"arrival_to_publish_us", latency_json(d_lag)},
                 {"samples", p.device.samples.size()},
                 {"samples_with_be_running", be_running(p.device)},
                 {"missing_first_unit_record", p.device.missing_first},
                 {"mapping_offset_spread_us", p.device.offset_spread_s * 1e6},
                 {"be_passes_per_s", p.device.seconds > 0 ? double(p.device.be_passes) / p.device.seconds : 0.0},
                 {"be_passes_preempted", p.device.be_preempted},
                 {"be_pass_ms", to_json(stats_of(p.device.be_pass_ms))},
                 {"raw_us",
                  {{"publish_to_first_unit", d_pub},
                   {"pass_start_to_first_unit", d_taken},
                   {"publish_to_pass_start", d_pub_taken},
                   {"arrival_to_publish", d_lag}}}};
  return {{"policy", p.policy}, {"host", host}, {"device", device}};
}

void print_preemption(const PolicyResult& p, const json& j) {
  auto row = [&](const std::string& pol, const std::string& disp, const std::string& what, const json& s,
                 const std::string& be) {
    fmt::print("{:<16} {:<7} {:<38} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>5} {}\n", pol, disp, what,
               s["median"].get<double>(), s["p99"].get<double>(), s["mean"].get<double>(), s["max"].get<double>(),
               s["n"].get<int>(), be);
  };
  const json& h = j["host"];
  const json& d = j["device"];
  auto be_text = [](const json& x) {
    return fmt::format("{}/{} with BE running; BE {:.1f} passes/s, {:.2f} ms each, {} preempted",
                       x["samples_with_be_running"].get<int>(), x["samples"].get<size_t>(),
                       x["be_passes_per_s"].get<double>(), x["be_pass_ms"]["median"].get<double>(),
                       x["be_passes_preempted"].get<int64_t>());
  };
  row(p.policy, "host", "arrival -> first attn launched", h["arrival_to_first_unit_launch_us"], be_text(h));
  row("", "host", "  arrival -> noticed between units", h["arrival_to_noticed_us"], "");
  row("", "device", "publish -> first attn starts", d["publish_to_first_unit_us"], be_text(d));
  row("", "device", "  PassStart -> first attn (device clock)", d["pass_start_to_first_unit_us"], "");
  row("", "device", "  publish -> PassStart", d["publish_to_pass_start_us"], "");
}

}  // namespace qllm::bench
