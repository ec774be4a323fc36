#include "engine/workload/generator.h"

#include "engine/common/error.h"
#include "engine/workload/trace.h"

#include <algorithm>

namespace qllm::workload {
namespace {

// Independent random streams drawn from the one seed.
enum Stream : uint64_t { kArrivals = 1, kClasses = 2, kLengths = 3, kClosedLoop = 4, kJitter = 5 };

bool uses_sharegpt(const WorkloadSpec& s) {
  const bool trace_lengths = s.arrivals_process == "trace" && s.arrivals_trace_lengths;
  auto sharegpt = [&](RequestClass c) {
    return s.prompt_dist(c).kind == LengthDist::Kind::ShareGPT ||
           s.output_dist(c).kind == LengthDist::Kind::ShareGPT;
  };
  // Open-loop lengths come from the trace; closed-loop BE ones never do.
  const bool open_drawn = !trace_lengths;
  const bool ls = open_drawn && sharegpt(RequestClass::LS);
  const bool be = (s.closed_loop() || open_drawn) && sharegpt(RequestClass::BE);
  return ls || be;
}

}  // namespace

GeneratorOptions options_for_spec_file(const std::filesystem::path& spec_file) {
  GeneratorOptions o;
  o.spec_dir = spec_file.parent_path();
  o.traces_dir = find_traces_dir(o.spec_dir.empty() ? std::filesystem::path(".") : o.spec_dir);
  return o;
}

WorkloadGenerator::WorkloadGenerator(const WorkloadSpec& spec, const GeneratorOptions& options)
    : spec_(spec), options_(options), closed_rng_(uint64_t(spec.seed), kClosedLoop) {
  const std::string what = spec_.source.empty() ? std::string("workload") : spec_.source;
  validate(spec_, what);

  if (uses_sharegpt(spec_)) {
    const auto csv =
        options_.traces_dir.empty() ? std::filesystem::path() : options_.traces_dir / kShareGptCsv;
    std::error_code ec;
    const bool present = !csv.empty() && std::filesystem::exists(csv, ec);
    if (spec_.lengths_sharegpt_source == "file" && !present)
      fail(
          "{}: lengths.sharegpt_source is file but the ShareGPT length table {} was not found "
          "(set QLLM_TRACES_DIR, or use fitted)",
          what, csv.empty() ? std::string(kShareGptCsv) : csv.string());
    if (spec_.lengths_sharegpt_source != "fitted" && present) {
      sharegpt_rows_ = load_sharegpt_csv(csv);
      sharegpt_source_ = "file " + csv.string();
    } else {
      sharegpt_source_ = "fitted log-normal";
    }
  }
  const auto* rows = sharegpt_rows_.empty() ? nullptr : &sharegpt_rows_;
  auto sampler = [&](RequestClass c) {
    return LengthSampler(spec_.prompt_dist(c), spec_.output_dist(c), spec_.lengths_max_prompt,
                         spec_.lengths_max_total, rows);
  };
  const LengthSampler ls_lengths = sampler(RequestClass::LS);
  const LengthSampler be_lengths = sampler(RequestClass::BE);

  // Arrival times (and, for a trace, its lengths in the same order).
  std::vector<double> times;
  std::vector<LengthPair> trace_lengths;
  if (spec_.arrivals_process == "trace") {
    const auto path =
        resolve_trace_path(spec_.arrivals_trace, options_.traces_dir, options_.spec_dir, what);
    auto trace = read_trace(path, trace_format_for(path, spec_.arrivals_trace_format),
                            spec_.arrivals_max_rows);
    if (spec_.arrivals_jitter_s > 0) {
      Rng jitter(uint64_t(spec_.seed), kJitter);
      for (auto& r : trace) r.time_s += jitter.uniform() * spec_.arrivals_jitter_s;
      std::stable_sort(trace.begin(), trace.end(),
                       [](const TraceRow& a, const TraceRow& b) { return a.time_s < b.time_s; });
      const double t0 = trace.front().time_s;
      for (auto& r : trace) r.time_s -= t0;
    }
    for (const auto& r : trace) {
      const double t = r.time_s / spec_.arrivals_rate_scale;
      if (spec_.duration_s > 0 && t >= spec_.duration_s) break;
      if (spec_.num_requests > 0 && int64_t(times.size()) >= spec_.num_requests) break;
      times.push_back(t);
      trace_lengths.push_back({r.prompt, r.output});
    }
  } else {
    times = arrival_times();
  }

  Rng classes(uint64_t(spec_.seed), kClasses);
  Rng lengths(uint64_t(spec_.seed), kLengths);
  const bool from_trace = spec_.arrivals_process == "trace" && spec_.arrivals_trace_lengths;
  open_.reserve(times.size());
  for (size_t i = 0; i < times.size(); ++i) {
    WorkloadRequest r;
    r.id = int64_t(i);
    r.arrival_s = times[i];
    const double u = classes.uniform();
    r.cls = spec_.closed_loop() || u < spec_.ls_fraction ? RequestClass::LS : RequestClass::BE;
    const LengthPair p =
        from_trace
            ? clamp_to_caps(trace_lengths[i], spec_.lengths_max_prompt, spec_.lengths_max_total)
            : (r.cls == RequestClass::LS ? ls_lengths : be_lengths).sample(lengths);
    r.prompt_tokens = p.prompt;
    r.max_tokens = p.output;
    open_.push_back(r);
  }
  closed_end_s_ =
      spec_.duration_s > 0 ? spec_.duration_s : (open_.empty() ? 0.0 : open_.back().arrival_s);
}

std::vector<double> WorkloadGenerator::arrival_times() {
  Rng rng(uint64_t(spec_.seed), kArrivals);
  const bool gamma = spec_.arrivals_process == "gamma";
  const double rate = spec_.arrivals_rate;
  const double shape = spec_.arrivals_burstiness;
  std::vector<double> times;
  // As vLLM's benchmark: the first request at once, then the drawn gaps.
  double t = 0;
  for (;;) {
    if (spec_.num_requests > 0 && int64_t(times.size()) >= spec_.num_requests) break;
    if (spec_.duration_s > 0 && t >= spec_.duration_s) break;
    times.push_back(t);
    // Gamma(shape k, scale 1 / (rate k)): mean gap 1 / rate, CV 1 / sqrt(k).
    t += gamma ? rng.gamma(shape, 1.0 / (rate * shape)) : rng.exponential(rate);
  }
  return times;
}

WorkloadRequest WorkloadGenerator::make_closed_loop(double now_s) {
  const auto* rows = sharegpt_rows_.empty() ? nullptr : &sharegpt_rows_;
  const LengthSampler be(spec_.prompt_dist(RequestClass::BE), spec_.output_dist(RequestClass::BE),
                         spec_.lengths_max_prompt, spec_.lengths_max_total, rows);
  const LengthPair p = be.sample(closed_rng_);
  WorkloadRequest r;
  r.id = int64_t(open_.size()) + closed_issued_++;
  r.arrival_s = now_s;
  r.cls = RequestClass::BE;
  r.prompt_tokens = p.prompt;
  r.max_tokens = p.output;
  r.closed_loop = true;
  return r;
}

std::vector<WorkloadRequest> WorkloadGenerator::closed_loop_start() {
  QLLM_CHECK_MSG(closed_issued_ == 0, "closed_loop_start() called twice");
  std::vector<WorkloadRequest> out;
  for (int64_t i = 0; i < spec_.be_concurrency; ++i) out.push_back(make_closed_loop(0.0));
  return out;
}

std::optional<WorkloadRequest> WorkloadGenerator::next_closed_loop(double now_s) {
  if (!closed_loop() || now_s >= closed_end_s_) return std::nullopt;
  return make_closed_loop(now_s);
}

std::vector<WorkloadRequest> generate_open_loop(const WorkloadSpec& spec,
                                                const GeneratorOptions& options) {
  return WorkloadGenerator(spec, options).open_loop();
}

}  // namespace qllm::workload
