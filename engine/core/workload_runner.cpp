#include "engine/core/workload_runner.h"

#include "engine/common/error.h"
#include "engine/model/synthetic_init.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>

namespace qllm {
namespace {

PriorityClass to_class(workload::RequestClass c) {
  return c == workload::RequestClass::LS ? PriorityClass::LS : PriorityClass::BE;
}

Request make_request(const workload::WorkloadRequest& w, int vocab, uint64_t seed) {
  Request r;
  r.id = uint64_t(w.id);
  r.cls = to_class(w.cls);
  r.arrival_s = w.arrival_s;
  r.max_tokens = int(w.max_tokens);
  r.prompt.resize(size_t(std::max<int64_t>(1, w.prompt_tokens)));
  for (size_t i = 0; i < r.prompt.size(); ++i)
    r.prompt[i] = int32_t(synth::splitmix64(synth::splitmix64(seed ^ r.id) + i) % uint64_t(vocab));
  return r;
}

}  // namespace

WorkloadRun run_workload(const cpu::ReferenceModel& model, const workload::WorkloadSpec& spec,
                         const workload::GeneratorOptions& gen_opts, const EngineLimits& limits) {
  CpuBackend backend(model, limits.ls_slots + limits.be_slots, limits.kv_blocks, limits.block_size);
  return run_workload(backend, spec, gen_opts, limits);
}

WorkloadRun run_workload(Backend& backend, const workload::WorkloadSpec& spec,
                         const workload::GeneratorOptions& gen_opts, const EngineLimits& limits) {
  workload::WorkloadGenerator gen(spec, gen_opts);
  MeasuredClock measured;
  RealTimeClock real;
  Clock& clock = backend.as_pass_backend() ? static_cast<Clock&>(real) : measured;
  Engine engine(backend, limits, clock);
  const int vocab = backend.desc().vocab;
  const uint64_t seed = uint64_t(spec.seed);

  std::deque<workload::WorkloadRequest> pending(gen.open_loop().begin(), gen.open_loop().end());
  if (gen.closed_loop())
    for (const auto& w : gen.closed_loop_start()) pending.push_front(w);
  std::sort(pending.begin(), pending.end(),
            [](const auto& a, const auto& b) { return a.arrival_s < b.arrival_s; });
  std::map<int64_t, workload::WorkloadRequest> by_id;
  std::map<int64_t, workload::RequestRecord> failed;

  WorkloadRun run;
  std::vector<TokenEvent> events;
  auto submit_due = [&] {
    while (!pending.empty() && pending.front().arrival_s <= clock.now()) {
      auto w = pending.front();
      pending.pop_front();
      by_id[w.id] = w;
      try {
        engine.submit(make_request(w, vocab, seed));
      } catch (const Error& e) {  // a request that cannot run fails alone
        workload::RequestRecord rec;
        rec.id = w.id;
        rec.cls = w.cls;
        rec.arrival_s = w.arrival_s;
        rec.prompt_tokens = w.prompt_tokens;
        rec.error = e.what();
        failed[w.id] = rec;
      }
    }
  };
  for (;;) {
    submit_due();
    events.clear();
    const bool ran = engine.step(events);
    run.units += ran;
    for (const auto& ev : events) {
      if (ev.finish == Finish::None) continue;
      const auto& w = by_id.at(int64_t(ev.id));
      if (w.closed_loop)
        if (auto next = gen.next_closed_loop(clock.now())) {
          next->arrival_s = std::max(next->arrival_s, clock.now());
          pending.insert(std::upper_bound(pending.begin(), pending.end(), *next,
                                          [](const auto& a, const auto& b) { return a.arrival_s < b.arrival_s; }),
                         *next);
        }
    }
    if (!ran) {
      if (pending.empty()) break;
      clock.idle_until(pending.front().arrival_s);
    }
  }

  for (const auto& [id, t] : engine.timings()) {
    workload::RequestRecord rec;
    rec.id = int64_t(id);
    rec.cls = t.cls == PriorityClass::LS ? workload::RequestClass::LS : workload::RequestClass::BE;
    rec.arrival_s = t.arrival_s;
    rec.first_scheduled_s = t.first_scheduled_s >= 0 ? t.first_scheduled_s : workload::kNoTime;
    rec.first_token_s = t.first_token_s >= 0 ? t.first_token_s : workload::kNoTime;
    rec.token_times_s = t.token_times_s;
    rec.finish_s = t.finish_s >= 0 ? t.finish_s : workload::kNoTime;
    rec.prompt_tokens = t.prompt_tokens;
    rec.output_tokens = t.output_tokens;
    rec.preemptions = t.preemptions;
    rec.finished_ok = t.finish != Finish::None;
    if (!rec.finished_ok) rec.error = "did not finish";
    run.records.push_back(std::move(rec));
  }
  for (auto& [id, rec] : failed) run.records.push_back(std::move(rec));
  std::sort(run.records.begin(), run.records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  run.duration_s = clock.now();
  run.preemptions = engine.num_preemptions();
  run.unit_log = engine.unit_log();
  return run;
}

}  // namespace qllm
