// qllm_bench_model: the GPU forward pass at a real model shape through the
// host dispatcher's backend (engine/gpu/host_backend.h): decode step latency,
// prefill throughput, the memory bandwidth decode achieves against the copy
// ceiling, and what launching a unit graph from the host costs.
//
//   qllm_bench_model --model mixtral-8x7b|olmoe-1b-7b|qwen3-30b-a3b [--layers N] [--json FILE]
//   qllm_bench_model --checkpoint DIR [...]     the checkpoint's weights instead of synthetic ones
//     [--batches 1,8,32,128] [--context 512] [--prompts 512,2048] [--steps 50] [--warmup 5]
//     [--prefill-reps 5] [--max-tokens 512] [--prefill-chunk 256] [--max-seq-len 4096]
//     [--launch-iters 1000] [--reserve-gib 2] [--seed 0] [--commit REV]
//     [--skip copy,launch,decode,prefill]
//
// Setup. The shape is make-model's preset (engine/model/make_model.h: the
// ModelDesc `qllm make-model --preset` writes); the weights are made on the
// device (DeviceWeights::synthetic, --seed) or uploaded from --checkpoint, in
// bf16. One slot of --max-tokens tokens and max(--batches) sequences per step
// (the engine's units and graphs, captured at start), KV blocks of 16 tokens,
// enough for every decode sequence to own its own ⌈(context + 1) / 16⌉. Without
// --layers, as many layers as fit (memory_plan.h layers_that_fit) in the free
// memory less --reserve-gib and 64 KiB per unit graph; the layer count goes
// with every figure.
//
// Decode, per batch B: B sequences, one token each at position --context (the
// earlier positions' KV is whatever the cache holds, zeros: the work is the
// same). One untimed pass reads the expert counts of every layer; then the
// pass runs two ways, --warmup times untimed and --steps times each timed
// alone (wall: steady_clock from begin to the head's tokens on the host; GPU:
// CUDA events on the slot's stream); median and p90:
//   host    as the engine drives the host dispatcher: begin, run(attn) (which
//           copies the expert counts back and synchronises, once per layer),
//           run(expert) per expert with rows, run(head) (copies tokens back)
//   replay  the same unit graphs launched back to back with the expert list of
//           the untimed pass: no host round trip inside the pass, the best a
//           device-side scheduler could do with these graphs
//
// Bandwidth, per batch (the goal is judged at batch 1): bytes per pass ÷ the
// median wall time, against the copy ceiling measured in this process
// (bench_device.h: best median of a 1 GiB device-to-device copy, bytes read +
// written, as qllm_bench_copy counts). Bytes per pass:
//   weights  q, k, v, o, norms, routers, dense MLPs and the LM head once; in
//            each MoE layer the experts that got rows (gate, up, down) once
//            each; B embedding rows
//   KV       K and V of every layer: B·(context + 1) positions read, B written
// Activations, router logits and sampling are left out (at batch 1, well under
// 1% of the weights). The goal, ≥ 70% of the ceiling at batch 1, is printed
// with whether it was met; never asserted.
//
// Prefill, per prompt length P: one sequence, the prompt cut into chunks of
// --prefill-chunk tokens (0: one chunk), one host-path pass per chunk in
// order, as the engine runs a lone prompt (the last chunk asks for logits).
// One warm-up, then --prefill-reps timed runs; tokens/s = P ÷ median time.
//
// Launch cost of cudaGraphLaunch from the host: (a) a graph of one empty
// kernel, instantiated for host launch and for device launch; (b) the decode
// attn unit and an expert unit (one the batch-1 pass chose) of layer 0 at
// bucket 1, as captured by the backend:
//   call          host time of the call alone, the stream idle before it
//   back-to-back  --launch-iters launches in a row, then a synchronise: wall
//                 time per launch (host throughput) and GPU time per launch
//   run           GPU time of one launch alone (the graph's execution)
//
// Prints tables; --json FILE writes every figure with the GPU, the shape,
// dtype, layer count and commit (--commit, else $QLLM_COMMIT, else
// `git rev-parse --short HEAD`), rewritten after each part ("complete":
// false until the end, so a run that dies part way keeps what it measured).
// Exits with code 2 and a message when there is no CUDA device; 1 on a bad
// argument or a model that does not fit.
#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/host_backend.h"
#include "engine/gpu/memory_plan.h"
#include "engine/model/checkpoint.h"
#include "graphs/graph_table.h"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "profiling/bench_device.h"
#include "profiling/bench_passes.h"
#include "profiling/bench_setup.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qllm {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;
using bench::ceil_div;
using bench::check_device_error;
using bench::decode_pass;
using bench::launch;
using bench::PassInput;
using bench::Routing;
using bench::Stats;
using bench::stats_of;
using bench::to_json;

constexpr double kGoal = 0.70;                     // decode bandwidth at batch 1 / copy ceiling
constexpr size_t kCopyBytes = size_t(1) << 30;     // the copy ceiling's size (as qllm_bench_copy's largest)

struct Options {
  std::string model, checkpoint, json_path, commit;
  int layers = 0;
  std::vector<int> batches = {1, 8, 32, 128};
  int context = 512;
  std::vector<int> prompts = {512, 2048};
  int steps = 50, warmup = 5, prefill_reps = 5;
  int max_tokens = 512, prefill_chunk = 256, max_seq_len = 4096, block_size = 16;
  int launch_iters = 1000;
  double reserve_gib = 2.0;
  uint64_t seed = 0;
  bool copy = true, launch = true, decode = true, prefill = true;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "qllm_bench_model: %s\n"
               "usage: qllm_bench_model (--model mixtral-8x7b|olmoe-1b-7b|qwen3-30b-a3b | --checkpoint DIR)\n"
               "         [--layers N] [--json FILE] [--commit REV] [--batches 1,8,32,128] [--context 512]\n"
               "         [--prompts 512,2048] [--steps 50] [--warmup 5] [--prefill-reps 5] [--max-tokens 512]\n"
               "         [--prefill-chunk 256] [--max-seq-len 4096] [--launch-iters 1000] [--reserve-gib 2]\n"
               "         [--seed 0] [--skip copy,launch,decode,prefill]\n",
               why.c_str());
  std::exit(1);
}

int parse_int(const std::string& flag, const std::string& v, int lo) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < lo || n > INT_MAX) usage(fmt::format("bad value '{}' for {}", v, flag));
  return int(n);
}

std::vector<int> parse_ints(const std::string& flag, const std::string& s, int lo) {
  std::vector<int> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    v.push_back(parse_int(flag, s.substr(pos, comma - pos), lo));
    pos = comma + 1;
  }
  return v;
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
    else if (a == "--checkpoint") o.checkpoint = value();
    else if (a == "--json") o.json_path = value();
    else if (a == "--commit") o.commit = value();
    else if (a == "--layers") o.layers = parse_int(a, value(), 1);
    else if (a == "--batches") o.batches = parse_ints(a, value(), 1);
    else if (a == "--context") o.context = parse_int(a, value(), 1);
    else if (a == "--prompts") o.prompts = parse_ints(a, value(), 1);
    else if (a == "--steps") o.steps = parse_int(a, value(), 1);
    else if (a == "--warmup") o.warmup = parse_int(a, value(), 0);
    else if (a == "--prefill-reps") o.prefill_reps = parse_int(a, value(), 1);
    else if (a == "--max-tokens") o.max_tokens = parse_int(a, value(), 1);
    else if (a == "--prefill-chunk") o.prefill_chunk = parse_int(a, value(), 0);
    else if (a == "--max-seq-len") o.max_seq_len = parse_int(a, value(), 1);
    else if (a == "--launch-iters") o.launch_iters = parse_int(a, value(), 1);
    else if (a == "--seed") o.seed = uint64_t(parse_int(a, value(), 0));
    else if (a == "--reserve-gib") {
      const std::string v = value();
      char* end = nullptr;
      o.reserve_gib = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(o.reserve_gib >= 0)) usage("bad value '" + v + "' for --reserve-gib");
    } else if (a == "--skip") {
      const std::string v = "," + value() + ",";
      for (const char* part : {"copy", "launch", "decode", "prefill"}) {
        const bool skip = v.find(std::string(",") + part + ",") != std::string::npos;
        bool& flag = std::string(part) == "copy" ? o.copy
                     : std::string(part) == "launch" ? o.launch
                     : std::string(part) == "decode" ? o.decode
                                                     : o.prefill;
        flag = !skip;
      }
    } else if (a == "-h" || a == "--help") {
      usage("the GPU forward pass at a real model shape: decode, prefill, bandwidth, launch cost");
    } else {
      usage("unknown argument " + a);
    }
  }
  if (o.model.empty() == o.checkpoint.empty()) usage("give one of --model and --checkpoint");
  if (!o.model.empty())
    if (const std::string why = bench::unknown_preset(o.model); !why.empty()) usage(why);
  const int most_batch = *std::max_element(o.batches.begin(), o.batches.end());
  if (o.decode && most_batch > o.max_tokens)
    usage(fmt::format("batch {} is more than --max-tokens {}", most_batch, o.max_tokens));
  for (int p : o.prompts) {
    const int chunk = o.prefill_chunk > 0 ? std::min(o.prefill_chunk, p) : p;
    if (o.prefill && chunk > o.max_tokens)
      usage(fmt::format("prompt {} in chunks of {} tokens: a chunk is more than --max-tokens {}", p, chunk,
                        o.max_tokens));
  }
  return o;
}

// ---- statistics and timing ----------------------------------------------------

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Times a piece of work on the host clock and with CUDA events on one stream.
class Timer {
 public:
  explicit Timer(cudaStream_t s) : s_(s) {
    QLLM_CUDA_CHECK(cudaEventCreate(&e0_));
    QLLM_CUDA_CHECK(cudaEventCreate(&e1_));
  }
  ~Timer() {
    cudaEventDestroy(e0_);
    cudaEventDestroy(e1_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Runs f() `untimed` times, then `timed` times each timed alone.
  template <typename F>
  void run(int untimed, int timed, F&& f) {
    for (int i = 0; i < untimed; ++i) f();
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s_));
    for (int i = 0; i < timed; ++i) {
      const auto t0 = Clock::now();
      QLLM_CUDA_CHECK(cudaEventRecord(e0_, s_));
      f();
      QLLM_CUDA_CHECK(cudaEventRecord(e1_, s_));
      QLLM_CUDA_CHECK(cudaEventSynchronize(e1_));
      wall_ms.push_back(ms_since(t0));
      float g = 0;
      QLLM_CUDA_CHECK(cudaEventElapsedTime(&g, e0_, e1_));
      gpu_ms.push_back(double(g));
    }
  }
  std::vector<double> wall_ms, gpu_ms;

 private:
  cudaStream_t s_;
  cudaEvent_t e0_ = nullptr, e1_ = nullptr;
};

// ---- graph launch cost -----------------------------------------------------------

struct LaunchCost {
  std::string graph;
  Stats call_us, run_us;
  double b2b_wall_us = 0, b2b_gpu_us = 0;
};

LaunchCost launch_cost(const std::string& name, cudaGraphExec_t g, cudaStream_t s, int iters) {
  LaunchCost c;
  c.graph = name;
  for (int i = 0; i < 10; ++i) launch(g, s, name.c_str());
  QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> call;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    QLLM_CUDA_CHECK(cudaGraphLaunch(g, s));
    call.push_back(ms_since(t0) * 1e3);
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  c.call_us = stats_of(call);
  Timer one(s);
  one.run(0, std::min(iters, 200), [&] { QLLM_CUDA_CHECK(cudaGraphLaunch(g, s)); });
  std::vector<double> run_us;
  for (double ms : one.gpu_ms) run_us.push_back(ms * 1e3);
  c.run_us = stats_of(run_us);
  Timer all(s);
  all.run(0, 1, [&] {
    for (int i = 0; i < iters; ++i) QLLM_CUDA_CHECK(cudaGraphLaunch(g, s));
  });
  c.b2b_wall_us = all.wall_ms[0] * 1e3 / iters;
  c.b2b_gpu_us = all.gpu_ms[0] * 1e3 / iters;
  return c;
}

// ---- the run ---------------------------------------------------------------------

int run(const Options& o, int argc, char** argv) {
  const auto report = cuda::query_devices();
  if (report.devices.empty()) {
    std::fprintf(stderr, "qllm_bench_model: no CUDA device (%s); nothing measured\n", report.why_none.c_str());
    return 2;
  }
  Progress::set_enabled(false);
  const auto& dev = report.devices[0];
  QLLM_CUDA_CHECK(cudaSetDevice(dev.index));
  cudaStream_t side = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));

  // Written after every section, so a run that dies part way keeps what it measured.
  json out = bench::run_header("model", o.commit, argc, argv, report, dev);
  auto save = [&](bool complete) { bench::save_json(o.json_path, out, complete); };

  // The ceilings first, while the memory is free.
  bench::CopyCeiling ceiling;
  if (o.copy) {
    ceiling = bench::measure_copy_ceiling(kCopyBytes, 20, 3, side);
    json runs = json::array();
    for (const auto& r : ceiling.runs)
      runs.push_back({{"method", r.method}, {"bytes", r.bytes}, {"median_ms", r.median_ms}, {"gbps", r.gbps()},
                      {"verified", r.verified}});
    out["copy_ceiling"] = {{"gbps", ceiling.gbps},
                           {"method", ceiling.method},
                           {"counting", "(bytes read + bytes written) / s / 1e9, median of 20 after 3 warm-up"},
                           {"verified", ceiling.verified},
                           {"runs", runs}};
  }

  // The model: its shape, the layers that fit, the weights, the backend.
  std::optional<Checkpoint> ck;
  ModelDesc full;
  std::string name = o.model;
  if (!o.checkpoint.empty()) {
    ck.emplace(Checkpoint::open(o.checkpoint, {.progress = false}));
    full = ck->desc();
    auto dir = ck->dir();
    if (dir.filename().empty()) dir = dir.parent_path();  // "DIR/"
    name = dir.filename().string();
  } else {
    full = bench::preset_desc(o.model);
  }
  const int most_batch = o.decode ? *std::max_element(o.batches.begin(), o.batches.end()) : 1;
  const int longest = o.prefill ? *std::max_element(o.prompts.begin(), o.prompts.end()) : 1;
  gpu::HostBackendConfig hc;
  hc.slots = 1;
  hc.max_tokens = o.max_tokens;
  hc.max_seqs = std::max(1, most_batch);
  hc.block_size = o.block_size;
  hc.max_seq_len = std::max({o.max_seq_len, o.context + 1, longest});
  hc.sm_count = dev.sm_count;
  hc.kv_blocks = std::max<int64_t>(int64_t(most_batch) * ceil_div(o.context + 1, o.block_size),
                                   ceil_div(longest, o.block_size));
  const gpu::MemoryParams mp{.slots = 1, .slot = hc.model_config().slot, .kv_blocks = hc.kv_blocks};
  const int64_t graphs_all = gpu::count_unit_graphs(full, 1, hc.max_tokens, hc.max_seqs).total();
  const bench::LayerChoice fit =
      bench::choose_layers("qllm_bench_model", name, full, mp, graphs_all, o.layers, o.reserve_gib);
  const int layers = fit.layers;
  const uint64_t free_b = fit.free_bytes, total_b = fit.total_bytes, reserve = fit.set_aside;
  const gpu::DeviceMemoryPlan used = gpu::plan_device_memory(gpu::keep_layers(full, layers), mp);

  auto t0 = Clock::now();
  gpu::DeviceWeights w = ck ? gpu::DeviceWeights::upload(*ck, side, {.max_layers = layers, .progress = false})
                            : gpu::DeviceWeights::synthetic(full, o.seed, side, layers);
  const double weights_s = ms_since(t0) / 1e3;
  auto backend = std::make_unique<gpu::GpuHostBackend>(w, hc);
  gpu::GpuHostBackend& b = *backend;
  const ModelDesc& d = b.desc();
  const auto& cap = b.capture_summary();

  fmt::print("qllm_bench_model: {} ({}), {} of {} layers, bf16 {} weights, on {} ({} SMs, {} total)\n", name,
             d.architecture, d.layers, full.layers, ck ? "checkpoint" : fmt::format("synthetic (seed {})", o.seed),
             dev.name, dev.sm_count, gpu::format_gb(total_b));
  fmt::print("  weights {} in {:.1f} s; KV cache {} blocks of {} tokens ({}); 1 slot of {} tokens, {} sequences\n",
             gpu::format_gb(w.bytes()), weights_s, hc.kv_blocks, hc.block_size, gpu::format_gb(used.kv_bytes),
             hc.max_tokens, hc.max_seqs);
  fmt::print("  {}\n", cap.str());
  if (o.copy)
    fmt::print("  copy ceiling {:.1f} GB/s ({}, {} MiB, read + write){}\n", ceiling.gbps, ceiling.method,
               kCopyBytes >> 20, ceiling.verified ? "" : "  (A COPY WAS WRONG)");

  out["model"] = {{"name", name},
                  {"weights", ck ? "checkpoint " + o.checkpoint : fmt::format("synthetic, seed {}", o.seed)},
                  {"dtype", "bf16"},
                  {"shape", bench::shape_json(d, full.layers)}};
  out["setup"] = {{"slots", 1},
                  {"max_tokens", hc.max_tokens},
                  {"max_seqs", hc.max_seqs},
                  {"block_size", hc.block_size},
                  {"kv_blocks", hc.kv_blocks},
                  {"max_seq_len", hc.max_seq_len},
                  {"weight_bytes", w.bytes()},
                  {"kv_bytes", used.kv_bytes},
                  {"weights_seconds", weights_s},
                  {"free_bytes_before", free_b},
                  {"set_aside_bytes", reserve},
                  {"graphs", cap.graphs.total()},
                  {"capture_seconds", cap.seconds},
                  {"graph_device_bytes", cap.device_bytes}};
  save(false);

  const int vocab = d.vocab;
  std::optional<Routing> routing1;  // the batch-1 pass's experts (for the launch cost)
  auto routing_b1 = [&]() -> const Routing& {
    if (!routing1) {
      const PassInput p = decode_pass(1, o.context, o.block_size, vocab);
      routing1 = bench::recorded_pass(b, p);
      check_device_error(b, "decode batch 1");
    }
    return *routing1;
  };

  if (o.decode) {
    fmt::print("\ndecode: one token per sequence at context {}; median / p90 of {} passes after {} warm-up; "
               "GB/s = bytes per pass / median wall time\n",
               o.context, o.steps, o.warmup);
    fmt::print("{:>5} {:>19} {:>19} {:>11} {:>11} {:>9} {:>8} {:>9} {:>9} {:>9}\n", "batch", "host ms med/p90",
               "replay ms med/p90", "host tok/s", "rep. tok/s", "experts", "MB/pass", "host GB/s", "rep. GB/s",
               "of ceil.");
    json rows = json::array();
    for (int batch : o.batches) {
      const PassInput p = decode_pass(batch, o.context, o.block_size, vocab);
      const Routing r = bench::recorded_pass(b, p);
      check_device_error(b, "decode");
      if (batch == 1 && !routing1) routing1 = r;
      Timer host(b.stream(0)), rep(b.stream(0));
      host.run(o.warmup, o.steps, [&] { bench::host_pass(b, p); });
      rep.run(o.warmup, o.steps, [&] { bench::replay_pass(b, p, r); });
      check_device_error(b, "decode replay");
      const Stats hw = stats_of(host.wall_ms), hg = stats_of(host.gpu_ms);
      const Stats rw = stats_of(rep.wall_ms), rg = stats_of(rep.gpu_ms);
      const bench::Traffic t = bench::pass_traffic(d, r, batch, o.context);
      int64_t experts = 0, units = 2 + d.layers;
      for (int l = 0; l < d.layers; ++l)
        if (d.is_moe_layer(l)) experts += int64_t(r[size_t(l)].size());
      for (const auto& lr : r) units += int64_t(lr.size());
      const double per_layer = d.num_moe_layers() ? double(experts) / d.num_moe_layers() : 0.0;
      const double host_gbps = double(t.total()) / (hw.median * 1e-3) / 1e9;
      const double rep_gbps = double(t.total()) / (rw.median * 1e-3) / 1e9;
      const double host_ratio = ceiling.gbps > 0 ? host_gbps / ceiling.gbps : 0.0;
      const double rep_ratio = ceiling.gbps > 0 ? rep_gbps / ceiling.gbps : 0.0;
      fmt::print("{:>5} {:>9.3f} /{:>8.3f} {:>9.3f} /{:>8.3f} {:>11.0f} {:>11.0f} {:>9.2f} {:>8.1f} {:>9.0f} {:>9.0f} "
                 "{}\n",
                 batch, hw.median, hw.p90, rw.median, rw.p90, batch / (hw.median * 1e-3), batch / (rw.median * 1e-3),
                 per_layer, double(t.total()) / 1e6, host_gbps, rep_gbps,
                 o.copy ? fmt::format("{:.0f}% / {:.0f}%", 100 * host_ratio, 100 * rep_ratio) : "-");
      auto way = [&](const Stats& wall, const Stats& gpu_t, double gbps, double ratio) {
        json j = {{"wall_ms", to_json(wall)}, {"gpu_ms", to_json(gpu_t)},
                  {"tokens_per_s", batch / (wall.median * 1e-3)}, {"gbps", gbps}};
        if (o.copy) j["fraction_of_ceiling"] = ratio;
        return j;
      };
      rows.push_back({{"batch", batch},
                      {"context", o.context},
                      {"units_per_pass", units},
                      {"experts_per_moe_layer", per_layer},
                      {"bytes", {{"weights", t.weights}, {"kv", t.kv}, {"total", t.total()}}},
                      {"host", way(hw, hg, host_gbps, host_ratio)},
                      {"replay", way(rw, rg, rep_gbps, rep_ratio)}});
      if (batch == 1 && o.copy) {
        const bool host_met = host_ratio >= kGoal, rep_met = rep_ratio >= kGoal;
        out["bandwidth_batch1"] = {{"goal_fraction", kGoal},
                                   {"ceiling_gbps", ceiling.gbps},
                                   {"bytes_per_pass", t.total()},
                                   {"host", {{"gbps", host_gbps}, {"fraction", host_ratio}, {"met", host_met}}},
                                   {"replay", {{"gbps", rep_gbps}, {"fraction", rep_ratio}, {"met", rep_met}}}};
      }
    }
    out["decode"] = rows;
    save(false);
    if (out.contains("bandwidth_batch1")) {
      const json& bw = out["bandwidth_batch1"];
      fmt::print("batch 1 bandwidth: host {:.1f}% of the {:.0f} GB/s copy ceiling ({}), replay {:.1f}% ({}); "
                 "goal >= {:.0f}%\n",
                 100 * bw["host"]["fraction"].get<double>(), ceiling.gbps,
                 bw["host"]["met"].get<bool>() ? "met" : "NOT met", 100 * bw["replay"]["fraction"].get<double>(),
                 bw["replay"]["met"].get<bool>() ? "met" : "NOT met", 100 * kGoal);
    }
  }

  if (o.prefill) {
    fmt::print("\nprefill: one prompt, one host-path pass per chunk; median of {} runs after 1 warm-up\n",
               o.prefill_reps);
    fmt::print("{:>7} {:>6} {:>7} {:>19} {:>12}\n", "prompt", "chunk", "passes", "ms med/p90", "tokens/s");
    json rows = json::array();
    for (int prompt : o.prompts) {
      const int chunk = o.prefill_chunk > 0 ? std::min(o.prefill_chunk, prompt) : prompt;
      const std::vector<PassInput> passes = bench::prefill_passes(prompt, chunk, o.block_size, vocab);
      Timer t(b.stream(0));
      t.run(1, o.prefill_reps, [&] {
        for (const auto& p : passes) bench::host_pass(b, p);
      });
      check_device_error(b, "prefill");
      const Stats wall = stats_of(t.wall_ms), gpu_t = stats_of(t.gpu_ms);
      const double tps = prompt / (wall.median * 1e-3);
      fmt::print("{:>7} {:>6} {:>7} {:>9.2f} /{:>8.2f} {:>12.0f}\n", prompt, chunk, passes.size(), wall.median,
                 wall.p90, tps);
      rows.push_back({{"prompt", prompt},
                      {"chunk", chunk},
                      {"passes", passes.size()},
                      {"wall_ms", to_json(wall)},
                      {"gpu_ms", to_json(gpu_t)},
                      {"tokens_per_s", tps}});
    }
    out["prefill"] = rows;
    save(false);
  }

  if (o.launch) {
    fmt::print("\ncudaGraphLaunch from the host ({} launches each); us\n", o.launch_iters);
    fmt::print("{:<34} {:>17} {:>16} {:>16} {:>14}\n", "graph", "call med/p90", "back-to-back wall",
               "back-to-back GPU", "run med (GPU)");
    std::vector<LaunchCost> costs;
    for (bool device_launch : {false, true}) {
      cudaGraphExec_t g = bench::empty_kernel_graph(side, device_launch);
      costs.push_back(launch_cost(device_launch ? "empty kernel (device-launch graph)" : "empty kernel (host graph)",
                                  g, side, o.launch_iters));
      QLLM_CUDA_CHECK(cudaGraphExecDestroy(g));
    }
    const Routing& r = routing_b1();
    const PassInput p = decode_pass(1, o.context, o.block_size, vocab);
    b.begin(0, p.chunks, p.sampling);  // the units below read this pass's buffers
    QLLM_CUDA_CHECK(cudaStreamSynchronize(b.stream(0)));
    using graphs::UnitKind;
    costs.push_back(launch_cost("attn[0] decode, bucket 1", b.decode_attn_table().get(0, UnitKind::Attn, 0, 0, 0),
                                b.stream(0), o.launch_iters));
    if (!r[0].empty()) {
      const auto [id, rows] = r[0][0];
      const int bucket = graphs::bucket_of(rows, b.graph_table().shape().buckets);
      costs.push_back(launch_cost(fmt::format("expert[0][{}], bucket {}", id, 1 << bucket),
                                  b.graph_table().get(0, UnitKind::Expert, 0, id, bucket), b.stream(0),
                                  o.launch_iters));
    }
    b.run(0, sched::Cursor{sched::UnitKind::Head, 0, 0});  // ends the pass
    check_device_error(b, "launch cost");
    json rows = json::array();
    for (const auto& c : costs) {
      fmt::print("{:<34} {:>8.2f} /{:>7.2f} {:>16.2f} {:>16.2f} {:>14.2f}\n", c.graph, c.call_us.median,
                 c.call_us.p90, c.b2b_wall_us, c.b2b_gpu_us, c.run_us.median);
      rows.push_back({{"graph", c.graph},
                      {"call_us", to_json(c.call_us)},
                      {"back_to_back_wall_us", c.b2b_wall_us},
                      {"back_to_back_gpu_us", c.b2b_gpu_us},
                      {"run_gpu_us", to_json(c.run_us)}});
    }
    out["launch"] = {{"iters", o.launch_iters}, {"results", rows}};
  }

  backend.reset();
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
    std::fprintf(stderr, "qllm_bench_model: %s\n", e.what());
    return 1;
  }
}
