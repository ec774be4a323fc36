// qllm_bench_dispatch: the host dispatcher against the device dispatcher at a
// real model shape with synthetic weights: what dispatching one work unit
// costs, and how long a latency-sensitive pass waits for the GPU while
// best-effort prefill keeps it busy, under each policy.
//
//   qllm_bench_dispatch --model mixtral-8x7b|olmoe-1b-7b [--layers N] [--json FILE] [--commit REV]
//     [--batches 1,8] [--context 512] [--reps 50] [--warmup 5] [--tiny-reps 200]
//     [--samples 200] [--delay-ms 0.2,2] [--be-prompt 512] [--ls-batch 1]
//     [--policies fcfs-iteration,priority-layer,priority-expert] [--max-tokens 512]
//     [--reserve-gib 2] [--seed 0] [--skip overhead,tiny,preemption]
//
// Setup. The shape is make-model's preset, the weights are made on the GPU
// (DeviceWeights::synthetic, bf16), and without --layers as many layers are
// kept as fit (bench_setup.h; the same rule as qllm_bench_model). Two slots,
// as the engine has by default: slot 0 takes LS passes, slot 1 BE passes;
// --max-tokens rows and max(--batches, --ls-batch) sequences per step, KV
// blocks of 16 tokens (decode sequences and the BE prompt in separate
// blocks). The backends are built one after the other over the same weights:
// first the host dispatcher's (GpuHostBackend), then the device dispatcher's
// (GpuDeviceBackend, its start-up self-test included), which each
// measurement attaches to with its policy and clock, as each engine does.
// Neither runs an Engine: the passes are driven straight through the
// backends, the host dispatcher's as Engine::step_units drives it (before
// every unit the policy, pick_slot, chooses the slot; the slot runs its
// cursor's unit; sched::advance steps it), the device dispatcher's by
// publish and collect (dispatch_drivers.h; tested on the CPU backends).
//
// Two measurements (bench_dispatch.h), each described in its own file:
//   1. dispatch cost per unit (bench_dispatch_cost.cpp): one decode pass
//      at a time through each dispatcher, against the same graphs replayed
//      back to back, at the real shape and at make-model's tiny preset
//   2. preemption latency per policy (bench_dispatch_preemption.cpp): an LS
//      decode pass arriving while BE prefill passes run back to back
//
// Prints tables; --json FILE writes every figure and every sample with the
// GPU, the shape, dtype, layer count and commit (--commit, else
// $QLLM_COMMIT, else `git rev-parse --short HEAD`), rewritten after each part
// ("complete": false until the end). Exits with code 2 and a message when
// there is no CUDA device; 1 on a bad argument, a model that does not fit, or
// a backend that fails (the device dispatcher's self-test included).
#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/gpu/device_backend.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/host_backend.h"
#include "engine/gpu/memory_plan.h"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "profiling/bench_dispatch.h"
#include "profiling/bench_passes.h"
#include "profiling/bench_setup.h"
#include "profiling/dispatch_drivers.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qllm {
namespace {

using Steady = std::chrono::steady_clock;
using json = nlohmann::ordered_json;
using bench::ceil_div;
using bench::check_slots;
using bench::kSlots;
using bench::ms_between;
using bench::overhead_json;
using bench::OverheadRow;
using bench::PassInput;
using bench::PolicyResult;
using bench::preemption_json;
using bench::print_overhead;
using bench::print_preemption;
using bench::Routing;
using bench::time_host;
using bench::time_replay;
using bench::units_of;

constexpr uint64_t kFirstPassId = 1u << 20;  // above the self-test's ids

struct Options {
  std::string model, json_path, commit;
  int layers = 0;
  std::vector<int> batches = {1, 8};
  int context = 512;
  int reps = 50, warmup = 5, tiny_reps = 200;
  int samples = 200;
  double delay_lo_ms = 0.2, delay_hi_ms = 2.0;
  int be_prompt = 512, ls_batch = 1;
  std::vector<std::string> policies = {"fcfs-iteration", "priority-layer", "priority-expert"};
  int max_tokens = 512, max_seq_len = 4096, block_size = 16;
  double reserve_gib = 2.0;
  uint64_t seed = 0;
  bool overhead = true, tiny = true, preemption = true;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "qllm_bench_dispatch: %s\n"
               "usage: qllm_bench_dispatch --model mixtral-8x7b|olmoe-1b-7b [--layers N] [--json FILE] [--commit REV]\n"
               "         [--batches 1,8] [--context 512] [--reps 50] [--warmup 5] [--tiny-reps 200]\n"
               "         [--samples 200] [--delay-ms 0.2,2] [--be-prompt 512] [--ls-batch 1]\n"
               "         [--policies fcfs-iteration,priority-layer,priority-expert] [--max-tokens 512]\n"
               "         [--reserve-gib 2] [--seed 0] [--skip overhead,tiny,preemption]\n",
               why.c_str());
  std::exit(1);
}

int parse_int(const std::string& flag, const std::string& v, int lo) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < lo || n > INT_MAX) usage(fmt::format("bad value '{}' for {}", v, flag));
  return int(n);
}

double parse_double(const std::string& flag, const std::string& v, double lo) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(x >= lo)) usage(fmt::format("bad value '{}' for {}", v, flag));
  return x;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

std::optional<sched::Policy> policy_of(const std::string& name) {
  if (name == "fcfs-iteration") return sched::Policy::FcfsIteration;
  if (name == "priority-layer") return sched::Policy::PriorityLayer;
  if (name == "priority-expert") return sched::Policy::PriorityExpert;
  return std::nullopt;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + a);
      return argv[++i];
    };
    if (a == "--model") o.model = value();
    else if (a == "--json") o.json_path = value();
    else if (a == "--commit") o.commit = value();
    else if (a == "--layers") o.layers = parse_int(a, value(), 1);
    else if (a == "--batches") {
      o.batches.clear();
      for (const auto& s : split(value())) o.batches.push_back(parse_int(a, s, 1));
    } else if (a == "--context") o.context = parse_int(a, value(), 1);
    else if (a == "--reps") o.reps = parse_int(a, value(), 1);
    else if (a == "--warmup") o.warmup = parse_int(a, value(), 0);
    else if (a == "--tiny-reps") o.tiny_reps = parse_int(a, value(), 1);
    else if (a == "--samples") o.samples = parse_int(a, value(), 1);
    else if (a == "--delay-ms") {
      const auto v = split(value());
      if (v.size() != 2) usage("--delay-ms takes LO,HI (milliseconds)");
      o.delay_lo_ms = parse_double(a, v[0], 0);
      o.delay_hi_ms = parse_double(a, v[1], o.delay_lo_ms);
    } else if (a == "--be-prompt") o.be_prompt = parse_int(a, value(), 1);
    else if (a == "--ls-batch") o.ls_batch = parse_int(a, value(), 1);
    else if (a == "--policies") {
      o.policies = split(value());
      for (const auto& p : o.policies)
        if (!policy_of(p))
          usage(fmt::format("unknown policy '{}' (fcfs-iteration, priority-layer, priority-expert)", p));
    } else if (a == "--max-tokens") o.max_tokens = parse_int(a, value(), 1);
    else if (a == "--reserve-gib") o.reserve_gib = parse_double(a, value(), 0);
    else if (a == "--seed") o.seed = uint64_t(parse_int(a, value(), 0));
    else if (a == "--skip") {
      for (const auto& part : split(value())) {
        if (part == "overhead") o.overhead = false;
        else if (part == "tiny") o.tiny = false;
        else if (part == "preemption") o.preemption = false;
        else usage(fmt::format("unknown part '{}' for --skip (overhead, tiny, preemption)", part));
      }
    } else if (a == "-h" || a == "--help") {
      usage("the host dispatcher against the device dispatcher: dispatch cost per unit, preemption latency");
    } else {
      usage("unknown argument " + a);
    }
  }
  if (o.model.empty()) usage("--model is required");
  if (const std::string why = bench::unknown_preset(o.model); !why.empty()) usage(why);
  if (o.model == "tiny") usage("--model takes a real shape; the tiny preset is measured beside it");
  const int most = std::max(*std::max_element(o.batches.begin(), o.batches.end()), o.ls_batch);
  if (most > o.max_tokens) usage(fmt::format("batch {} is more than --max-tokens {}", most, o.max_tokens));
  if (o.preemption && o.be_prompt > o.max_tokens)
    usage(fmt::format("--be-prompt {} is more than --max-tokens {} (the BE pass is one chunk)", o.be_prompt,
                      o.max_tokens));
  return o;
}

// make-model's architecture name of a preset, for its tiny sibling.
std::string arch_of(const std::string& preset) {
  if (preset.rfind("mixtral", 0) == 0) return "mixtral";
  if (preset.rfind("olmoe", 0) == 0) return "olmoe";
  if (preset.rfind("qwen3", 0) == 0) return "qwen3_moe";
  return {};
}

// ---- the run ---------------------------------------------------------------------

gpu::HostBackendConfig backend_config(const Options& o, int sm_count, int64_t kv_blocks) {
  gpu::HostBackendConfig hc;
  hc.slots = kSlots;
  hc.max_tokens = o.max_tokens;
  hc.max_seqs = std::max(*std::max_element(o.batches.begin(), o.batches.end()), o.ls_batch);
  hc.block_size = o.block_size;
  hc.max_seq_len = std::max({o.max_seq_len, o.context + 1, o.be_prompt});
  hc.sm_count = sm_count;
  hc.kv_blocks = kv_blocks;
  return hc;
}

gpu::DeviceBackendOptions device_options(sched::Policy p) {
  gpu::DeviceBackendOptions opt;
  opt.loop.policy.policy = p;
  opt.loop.policy.be_max_wait_ns = 0;  // no promotion: BE waits as long as LS work is there
  return opt;
}

struct Measured {
  json overhead = json::array();
  json backends = json::array();
  bool overhead_met = true;
};

// Measures one shape: the host dispatcher's backend, then the device
// dispatcher's, one after the other over the same weights.
Measured measure(const gpu::DeviceWeights& w, const gpu::HostBackendConfig& hc, const Options& o,
                 const std::string& label, int reps, bool preemption, int ls_region_blocks,
                 const std::function<void(const json&)>& save_partial, json section) {
  Measured m;
  const ModelDesc& d = w.desc();
  const int vocab = d.vocab;
  std::vector<OverheadRow> rows;
  std::vector<PassInput> decode;
  if (o.overhead || !preemption)
    for (int batch : o.batches) decode.push_back(bench::decode_pass(batch, o.context, o.block_size, vocab));
  PassInput ls = bench::decode_pass(o.ls_batch, o.context, o.block_size, vocab);
  std::vector<PassInput> be_list = bench::prefill_passes(o.be_prompt, o.be_prompt, o.block_size, vocab);
  PassInput be = std::move(be_list.front());
  bench::offset_blocks(be, ls_region_blocks);
  const bench::PreemptionOptions popt{.warmup = o.warmup,
                                      .samples = o.samples,
                                      .delay_lo_ms = o.delay_lo_ms,
                                      .delay_hi_ms = o.delay_hi_ms,
                                      .seed = o.seed};

  std::vector<PolicyResult> results;
  for (const auto& p : o.policies) results.push_back({p, {}, {}});
  // The section as measured so far, written after every backend (a run cut
  // short keeps what it measured).
  auto update = [&] {
    if (!rows.empty()) section["dispatch_cost"] = overhead_json(rows, o.context);
    if (preemption) {
      json pols = json::array();
      for (const auto& r : results) pols.push_back(preemption_json(r));
      section["preemption"] = {
          {"method",
           "raw passes through the backends (no Engine): the host dispatcher driven unit by unit as "
           "Engine::step_units drives it, the device dispatcher by publish/collect"},
          {"ls_pass", {{"sequences", o.ls_batch}, {"context", o.context}, {"kind", "decode"}}},
          {"be_pass", {{"rows", o.be_prompt}, {"kind", "prefill, one chunk"}}},
          {"delay_ms", {o.delay_lo_ms, o.delay_hi_ms}},
          {"samples", o.samples},
          {"warmup", o.warmup},
          {"be_max_wait_s", 0},
          {"policies", pols}};
    }
    section["backends"] = m.backends;
    save_partial(section);
  };

  // The host dispatcher.
  {
    const auto t0 = Steady::now();
    auto host = std::make_unique<gpu::GpuHostBackend>(w, hc);
    const double build_s = ms_between(t0, Steady::now()) / 1e3;
    fmt::print("  host dispatcher: {} (built in {:.1f} s)\n", host->capture_summary().str(), build_s);
    m.backends.push_back({{"dispatcher", "host"},
                          {"build_seconds", build_s},
                          {"capture", host->capture_summary().str()},
                          {"capture_seconds", host->capture_summary().seconds},
                          {"graphs", host->capture_summary().graphs.total()},
                          {"graph_device_bytes", host->capture_summary().device_bytes}});
    for (size_t i = 0; i < decode.size(); ++i) {
      OverheadRow r;
      r.batch = o.batches[i];
      const Routing routing = bench::recorded_pass(*host, decode[i]);
      check_slots(*host, "decode pass");
      r.units = units_of(d, routing, decode[i]);
      r.host = time_host(*host, decode[i], o.warmup, reps);
      r.replay = time_replay(*host, decode[i], routing, o.warmup, reps);
      if (r.host.units != r.units)
        fmt::print("  note: batch {}: the host ran {} units, the recorded pass {}\n", r.batch, r.host.units, r.units);
      rows.push_back(std::move(r));
    }
    if (preemption)
      for (auto& res : results) {
        res.host = bench::host_preemption(*host, *policy_of(res.policy), ls, be, popt);
        check_slots(*host, "host dispatcher, preemption");
        fmt::print("  host dispatcher, {}: {} samples in {:.1f} s\n", res.policy, res.host.samples.size(),
                   res.host.seconds);
      }
  }
  update();

  // The device dispatcher: one backend; each measurement attaches with its
  // policy and clock, as each engine does.
  {
    uint64_t next_id = kFirstPassId;
    const auto t0 = Steady::now();
    auto dev = std::make_unique<gpu::GpuDeviceBackend>(w, hc, device_options(sched::Policy::PriorityExpert));
    const double build_s = ms_between(t0, Steady::now()) / 1e3;
    fmt::print("  device dispatcher: built in {:.1f} s; {}\n", build_s, dev->self_test_summary());
    m.backends.push_back({{"dispatcher", "device"},
                          {"build_seconds", build_s},
                          {"capture", dev->capture_summary().str()},
                          {"capture_seconds", dev->capture_summary().seconds},
                          {"self_test", dev->self_test_summary()}});
    for (size_t i = 0; i < rows.size(); ++i)
      rows[i].device = bench::time_device_passes(*dev, decode[i], o.warmup, reps, next_id);
    update();
    if (preemption)
      for (auto& res : results) {
        res.device = bench::device_preemption(*dev, *policy_of(res.policy), ls, be, popt, next_id);
        fmt::print("  device dispatcher, {}: {} samples in {:.1f} s\n", res.policy, res.device.samples.size(),
                   res.device.seconds);
        update();
      }
    m.backends.back()["dropped_timings"] = dev->dropped_timings();
    dev.reset();  // stops the loop
  }

  if (!rows.empty()) {
    fmt::print("\ndispatch cost, {}: one decode pass in slot 0 at context {}, nothing else running; median of {} "
               "after {} warm-up\n",
               label, o.context, reps, o.warmup);
    m.overhead_met = print_overhead(label, rows);
    m.overhead = overhead_json(rows, o.context);
  }
  if (preemption) {
    fmt::print("\npreemption latency, {}: LS decode pass ({} seq. at context {}) {:.2g}-{:.2g} ms after the "
               "previous one, over back-to-back BE prefill passes of {} rows; {} samples per policy after {} "
               "warm-up; us\n",
               label, o.ls_batch, o.context, o.delay_lo_ms, o.delay_hi_ms, o.be_prompt, o.samples, o.warmup);
    fmt::print("{:<16} {:<7} {:<38} {:>9} {:>9} {:>9} {:>9} {:>5}\n", "policy", "disp.", "latency", "p50", "p99",
               "mean", "max", "n");
    for (const auto& r : results) print_preemption(r, preemption_json(r));
  }
  update();
  return m;
}

int run(const Options& o, int argc, char** argv) {
  const auto report = cuda::query_devices();
  if (report.devices.empty()) {
    std::fprintf(stderr, "qllm_bench_dispatch: no CUDA device (%s); nothing measured\n", report.why_none.c_str());
    return 2;
  }
  Progress::set_enabled(false);
  const auto& dev = report.devices[0];
  QLLM_CUDA_CHECK(cudaSetDevice(dev.index));
  if (!dev.device_graph_launch) {
    std::fprintf(stderr, "qllm_bench_dispatch: %s (compute capability %d.%d) cannot launch graphs from the device; "
                 "nothing measured\n", dev.name.c_str(), dev.cc_major, dev.cc_minor);
    return 2;
  }
  cudaStream_t side = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));

  json out = bench::run_header("dispatch", o.commit, argc, argv, report, dev);
  auto save = [&](bool complete) { bench::save_json(o.json_path, out, complete); };

  // Blocks: decode sequences (and the LS pass) first, then the BE prompt.
  const int most_seqs = std::max(*std::max_element(o.batches.begin(), o.batches.end()), o.ls_batch);
  const int ls_region = most_seqs * ceil_div(o.context + 1, o.block_size);
  const int64_t kv_blocks = int64_t(ls_region) + ceil_div(o.be_prompt, o.block_size);
  const gpu::HostBackendConfig hc = backend_config(o, dev.sm_count, kv_blocks);

  const ModelDesc full = bench::preset_desc(o.model);
  const gpu::MemoryParams mp{.slots = hc.slots, .slot = hc.model_config().slot, .kv_blocks = hc.kv_blocks};
  const int64_t graphs_all = gpu::count_unit_graphs(full, hc.slots, hc.max_tokens, hc.max_seqs).total();
  const bench::LayerChoice fit =
      bench::choose_layers("qllm_bench_dispatch", o.model, full, mp, graphs_all, o.layers, o.reserve_gib);

  const auto t0 = Steady::now();
  std::optional<gpu::DeviceWeights> w;
  w.emplace(gpu::DeviceWeights::synthetic(full, o.seed, side, fit.layers));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(side));
  const double weights_s = ms_between(t0, Steady::now()) / 1e3;
  const ModelDesc& d = w->desc();
  const std::string label = fmt::format("{} ({} of {} layers)", o.model, d.layers, full.layers);
  fmt::print("qllm_bench_dispatch: {} ({}), {} of {} layers, bf16 synthetic weights (seed {}), on {} ({} SMs, {})\n",
             o.model, d.architecture, d.layers, full.layers, o.seed, dev.name, dev.sm_count,
             gpu::format_gb(fit.total_bytes));
  fmt::print("  weights {} in {:.1f} s; 2 slots (0: LS, 1: BE) of {} tokens, {} sequences; {} KV blocks of {} tokens\n",
             gpu::format_gb(w->bytes()), weights_s, hc.max_tokens, hc.max_seqs, hc.kv_blocks, hc.block_size);
  out["model"] = {{"name", o.model},
                  {"weights", fmt::format("synthetic, seed {}", o.seed)},
                  {"dtype", "bf16"},
                  {"shape", bench::shape_json(d, full.layers)}};
  out["setup"] = {{"slots", hc.slots},
                  {"slot_classes", {"LS", "BE"}},
                  {"max_tokens", hc.max_tokens},
                  {"max_seqs", hc.max_seqs},
                  {"block_size", hc.block_size},
                  {"kv_blocks", hc.kv_blocks},
                  {"max_seq_len", hc.max_seq_len},
                  {"weight_bytes", w->bytes()},
                  {"weights_seconds", weights_s},
                  {"free_bytes_before", fit.free_bytes},
                  {"set_aside_bytes", fit.set_aside}};
  out["shapes"] = json::array();
  save(false);

  bool all_met = true;
  json goal_rows = json::array();
  auto add_goal = [&](const std::string& shape, const Measured& m) {
    for (const auto& r : m.overhead) {
      if (!r.contains("goal_device_not_slower")) continue;
      const json& g = r.at("goal_device_not_slower");
      goal_rows.push_back({{"shape", shape},
                           {"batch", r.at("batch")},
                           {"met", g.at("met")},
                           {"host_median_ms", g.at("host_median_ms")},
                           {"device_median_ms", g.at("device_median_ms")}});
    }
  };

  {
    const json section = {{"label", label}, {"kind", "real"}, {"shape", bench::shape_json(d, full.layers)}};
    const size_t index = out["shapes"].size();
    out["shapes"].push_back(section);
    auto partial = [&](const json& s) {
      out["shapes"][index] = s;
      save(false);
    };
    if (o.overhead || o.preemption) {
      fmt::print("\n{}\n", label);
      const Measured m = measure(*w, hc, o, label, o.reps, o.preemption, ls_region, partial, section);
      all_met = all_met && m.overhead_met;
      add_goal(label, m);
    }
    save(false);
  }
  w.reset();

  if (o.tiny && o.overhead) {
    const std::string arch = arch_of(o.model);
    const ModelDesc tiny = bench::preset_desc("tiny", arch);
    gpu::DeviceWeights tw = gpu::DeviceWeights::synthetic(tiny, o.seed, side);
    QLLM_CUDA_CHECK(cudaStreamSynchronize(side));
    const std::string tl = fmt::format("tiny {} ({} layers)", arch, tiny.layers);
    fmt::print("\n{}: hidden {}, {} experts top-{}, vocab {}: units of a few us of GPU work\n", tl, tiny.hidden,
               tiny.num_experts, tiny.top_k, tiny.vocab);
    const json section = {{"label", tl}, {"kind", "tiny"}, {"shape", bench::shape_json(tiny, tiny.layers)}};
    const size_t index = out["shapes"].size();
    out["shapes"].push_back(section);
    auto partial = [&](const json& s) {
      out["shapes"][index] = s;
      save(false);
    };
    const Measured m = measure(tw, hc, o, tl, o.tiny_reps, false, ls_region, partial, section);
    all_met = all_met && m.overhead_met;
    add_goal(tl, m);
  }

  if (!goal_rows.empty()) {
    out["goal_device_not_slower"] = {
        {"statement", "median wall time per decode pass: device dispatcher <= host dispatcher"},
        {"met", all_met},
        {"rows", goal_rows}};
    fmt::print("\ngoal: the device dispatcher is not slower than the host dispatcher per pass: {}\n",
               all_met ? "met at every shape and batch" : "NOT met (rows marked NOT met above)");
  }
  QLLM_CUDA_CHECK(cudaStreamDestroy(side));
  save(true);
  if (!o.json_path.empty()) fmt::print("\nwrote {}\n", o.json_path);
  return 0;
}

}  // namespace
}  // namespace qllm

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe (tee) even if a CUDA check aborts
  const qllm::Options o = qllm::parse(argc, argv);
  try {
    return qllm::run(o, argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qllm_bench_dispatch: %s\n", e.what());
    return 1;
  }
}
