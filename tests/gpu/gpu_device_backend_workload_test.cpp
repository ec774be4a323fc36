// The engine over the device dispatcher (device_backend_fixture.h) on a GPU:
// its start-up, the batches it runs against the host dispatcher's, and the
// policies at unit boundaries.
//
//   SelfTestRunsAtStart             the start-up self-test (a prefill and a
//       decode pass from the device loop against the host launch) on a model
//       with a dense layer and on one without; the graphs captured; a failing
//       self-test throws and leaves nothing running; shutdown is acknowledged
//   SameBatchesAsTheHostDispatcher  a mixed LS/BE workload, greedy and seeded
//       sampling, under the three policies in real time; every pass the
//       engine published is then replayed, in publish order, through the host
//       dispatcher (GpuHostBackend) on the same weights and configuration:
//       the same tokens, the same logits (below)
//   LsStartsAtTheNextUnitBoundary   priority-expert: an LS batch taken while a
//       BE pass runs starts at the next unit boundary (from the loop's own
//       records: PassStart and the unit timings), the BE pass resumes after
//       it; fcfs-iteration: the BE pass finishes first
//
// Cancellation, shutdown and device errors: gpu_device_backend_stop_test.cpp.
//
// Device: what is exact and what is not.
//
// Exact. The device loop launches the very graphs the host dispatcher
// captures (GpuDeviceBackend builds a GpuHostBackend and uploads its graph
// tables), and picks each unit's graph by the same rules: the attn bucket
// from the pass's rows (the decode-attention table for a pass of one-token
// chunks), an expert's bucket from its row count, the head's from the sampled
// rows. So a pass replayed through a GpuHostBackend with the same chunks,
// positions, block tables and sampling runs the same kernels on the same
// inputs. Its KV history is the same too: a pass reads only its own
// sequences' blocks, written by their earlier passes, and a sequence's passes
// are published in order, each after the previous one's result; a block
// freed by one sequence is reused by a later one only after that sequence's
// last pass ended. Replaying every pass sequentially in publish order
// therefore reproduces every KV position each pass reads. The kernels are
// deterministic (no floating-point atomics; the expert lists are a stable
// counting sort), so every token must be equal and every logit row is
// expected bit for bit equal; the test also admits a row within 1e-3 of its
// scale, which only an ulp-level GEMM difference between the two model
// instances could produce (a cuBLASLt algorithm chosen differently by the
// second one), and prints how many rows were bit-equal. Wrong KV, a wrong
// expert list, a wrong bucket or a skipped unit moves logits by a sizeable
// fraction of their scale.
//
// Not exact. The loop runs in real time: which batches form (the engine
// batches what has arrived), when the loop takes them and which units
// interleave depend on timing, so the expected results are the recorded
// passes' replay, not fixed token lists, and preemption is checked as a
// count (> 0 under the priority policies, 0 under fcfs-iteration). Times:
// the loop stamps its records with the GPU's globaltimer; LoopBackend maps
// them onto the engine's clock with an offset fixed at the first drain (an
// upper bound: mapped times are late by the latency of that drain, a few
// microseconds while the engine polls). Times from the loop compare exactly
// with each other (the same offset); against the engine's own clock they
// agree within that latency. The begin unit (embedding) writes no timing
// record, so a pass's first logged unit is its attn[0].
#include "device_scheduler/device_loop.h"
#include "tests/gpu/device_backend_fixture.h"
#include "tests/gpu_test_util.h"
#include "tests/test_errors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace qllm;
using namespace qllm::test;
using namespace qllm::test::devbackend;

namespace {

constexpr double kReplayTol = 1e-3;  // of a logit row's scale (see the file comment)

// gpu_host_backend_test's workload, compressed for real time: BE at 0 (the
// first pass fills the 64-token bucket with three prompts in several chunks)
// with long outputs, so the BE slot is busy for some 200 decode passes; LS
// 10 ms apart from 2 ms on, while BE passes run (each LS pass is a chance to
// preempt one). Greedy and seeded sampling in both classes.
std::vector<Request> workload(int vocab) {
  const PriorityClass BE = PriorityClass::BE, LS = PriorityClass::LS;
  std::vector<Request> r;
  const int be_len[] = {5, 23, 9, 37, 2, 17}, be_max[] = {150, 100, 200, 120, 180, 90};
  for (int i = 0; i < 6; ++i) r.push_back(req(uint64_t(i + 1), BE, be_len[i], be_max[i], 0.0, i % 2 == 1, vocab));
  const int ls_len[] = {7, 19, 3, 12}, ls_max[] = {4, 5, 3, 6};
  for (int i = 0; i < 4; ++i)
    r.push_back(req(uint64_t(i + 11), LS, ls_len[i], ls_max[i], 0.002 + 0.01 * i, i % 2 == 0, vocab));
  return r;
}

// Submits each request at its arrival time (sleeping until the next one when
// nothing runs) and steps the engine until nothing runs and nothing is left
// to submit, or `limit_s` of wall time passed (in_time false).
Driven drive(Engine& e, Clock& clock, std::vector<Request> reqs, double limit_s) {
  std::sort(reqs.begin(), reqs.end(), [](const Request& a, const Request& b) { return a.arrival_s < b.arrival_s; });
  Driven d;
  std::vector<TokenEvent> ev;
  size_t next = 0;
  const auto t0 = Steady::now();
  for (;;) {
    if (seconds_since(t0) > limit_s) {
      d.in_time = false;
      break;
    }
    while (next < reqs.size() && reqs[next].arrival_s <= clock.now()) e.submit(reqs[next++]);
    ev.clear();
    const bool ran = e.step(ev);
    d.take(ev);
    if (!ran) {
      if (next == reqs.size()) break;
      clock.idle_until(std::min(reqs[next].arrival_s, clock.now() + 0.01));
    }
  }
  return d;
}

double scale_of(const float* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s = std::max(s, std::fabs(double(v[i])));
  return s;
}

double max_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

// ---------------------------------------------------------------------------

TEST(GpuDeviceEngine, SelfTestRunsAtStart) {
  QLLM_REQUIRE_GPU();
  // Hand counts (gpu_host_backend_test): T 64 (7 buckets), S 8 (4 buckets), 2 slots.
  const std::pair<const char*, int64_t> cases[] = {{"qwen3_moe", 314}, {"mixtral", 166}};
  for (const auto& [arch, total] : cases) {
    SCOPED_TRACE(arch);
    Weights g(open_tiny(arch, 11));
    const EngineLimits lim = limits(sched::Policy::PriorityExpert);
    gpu::GpuDeviceBackend dev(g.w, backend_config(lim), gpu::DeviceBackendOptions::from(lim));
    const std::string& s = dev.self_test_summary();
    std::printf("%s: %s\n%s: %s\n", arch, s.c_str(), arch, dev.capture_summary().str().c_str());
    EXPECT_HAS(s, "match the host launch");
    EXPECT_EQ(s.find("skipped"), std::string::npos) << s;
    const gpu::CaptureSummary& cs = dev.capture_summary();
    EXPECT_EQ(cs.graphs.total(), total);
    EXPECT_EQ(cs.graphs.total(), gpu::count_unit_graphs(g.ck.desc(), 2, 64, 8).total());
    EXPECT_EQ(cs.graphs.begin, 2);
    EXPECT_TRUE(dev.loop().running()) << "the loop waits for passes after the self-test";
    EXPECT_EQ(dev.dropped_timings(), 0u);

    const auto t0 = Steady::now();
    ASSERT_TRUE(dev.shutdown(5.0));
    EXPECT_LT(seconds_since(t0), 1.0);
    EXPECT_FALSE(dev.loop().running());
    const sched::LoopState st = dev.loop().state();
    EXPECT_GE(st.end.shutdown_acked, 1u);
    EXPECT_EQ(st.end.error, 0u);
    // The self-test's two passes, every unit of each: at least begin, one attn
    // per layer and the head, twice.
    EXPECT_GE(st.units_launched, uint64_t(2 * (g.ck.desc().layers + 2)));
  }

  // A self-test that cannot pass (a negative tolerance) throws with what
  // differed, after stopping its loop: a second backend then starts normally.
  Weights g(open_tiny("mixtral", 11));
  const EngineLimits lim = limits(sched::Policy::PriorityExpert);
  auto opt = gpu::DeviceBackendOptions::from(lim);
  opt.self_test_tolerance = -1;
  EXPECT_HAS(error_of([&] { gpu::GpuDeviceBackend bad(g.w, backend_config(lim), opt); }),
             "device dispatcher self-test: pass 0 logits differ");
  gpu::GpuDeviceBackend ok(g.w, backend_config(lim), gpu::DeviceBackendOptions::from(lim));
  EXPECT_HAS(ok.self_test_summary(), "match the host launch");
}

// ---------------------------------------------------------------------------

// A device run: every pass the engine published (with its result) and the
// logit rows of each pass that ended Done, read in on_result.
struct DeviceRun {
  std::vector<RecordedPass> passes;
  std::map<uint64_t, std::vector<float>> logits;  // by pass id
  int64_t preemptions = 0;
  size_t units = 0;
};

// With queue_prefill, a pass queued behind may have overwritten the slot's
// logits by then: only tokens are recorded.
DeviceRun run_on_device(const Weights& g, const EngineLimits& lim, const std::vector<Request>& reqs) {
  DeviceRun out;
  DeviceRig rig(g.w, lim);
  rig.rec->on_result = [&](RecordedPass& p) {
    // Before the engine can publish the slot's next pass: the rows are this pass's.
    if (p.result.status == PassStatus::Done && !lim.queue_prefill) out.logits[p.id] = rig.dev->logits(p.slot);
  };
  const Driven d = drive(*rig.engine, *rig.clock, reqs, 60.0);
  EXPECT_TRUE(d.in_time) << "the workload did not finish within 60 s";
  EXPECT_TRUE(rig.engine->idle());
  EXPECT_EQ(rig.engine->blocks().num_free_blocks(), lim.kv_blocks);
  for (const auto& r : reqs) {
    EXPECT_EQ(d.finish.count(r.id) ? int(d.finish.at(r.id)) : -1, int(Finish::Length)) << "request " << r.id;
    EXPECT_EQ(d.tokens.count(r.id) ? d.tokens.at(r.id).size() : 0u, size_t(r.max_tokens)) << "request " << r.id;
  }
  EXPECT_EQ(rig.dev->dropped_timings(), 0u) << "the preemption count reads the unit timings";
  out.preemptions = rig.engine->num_preemptions();
  out.units = rig.engine->unit_log().size();
  EXPECT_TRUE(rig.dev->shutdown(5.0));
  out.passes = std::move(rig.rec->passes);
  return out;
}

// Replays every pass in publish order through the host dispatcher.
void replay(gpu::GpuHostBackend& h, const DeviceRun& run, const std::string& what) {
  const int layers = h.desc().layers;
  const size_t V = size_t(h.desc().vocab);
  size_t rows = 0, equal_rows = 0, token_passes = 0;
  double worst = 0;
  for (const RecordedPass& p : run.passes) {
    ASSERT_EQ(int(p.result.status), int(PassStatus::Done)) << what << ": pass " << p.id << " " << p.result.error;
    const auto chunks = p.chunks();
    h.begin(p.slot, chunks, p.sampling);
    sched::SlotState st;
    sched::publish(st, p.cls, 0);
    for (int guard = 0; st.active; ++guard) {
      ASSERT_LT(guard, 1 << 20) << what << ": pass " << p.id << " does not end";
      const int n = h.run(p.slot, st.cursor);
      sched::advance(st, layers, n);
    }
    const std::vector<int32_t> tokens = h.sampled(p.slot);
    const std::vector<float> logits = h.logits(p.slot);
    EXPECT_EQ(tokens, p.result.tokens) << what << ": pass " << p.id << " (slot " << p.slot << ")";
    token_passes += !tokens.empty();
    if (run.logits.empty()) continue;  // a run with passes queued behind: tokens only
    const auto it = run.logits.find(p.id);
    ASSERT_NE(it, run.logits.end()) << what << ": no logits recorded for pass " << p.id;
    const std::vector<float>& dev = it->second;
    ASSERT_EQ(dev.size(), logits.size()) << what << ": pass " << p.id;
    ASSERT_EQ(logits.size(), tokens.size() * V) << what << ": pass " << p.id;
    for (size_t r = 0; r < tokens.size(); ++r) {
      const float* a = logits.data() + r * V;
      const float* b = dev.data() + r * V;
      ++rows;
      if (std::memcmp(a, b, V * sizeof(float)) == 0) {
        ++equal_rows;
        continue;
      }
      const double scale = std::max(1.0, scale_of(a, V)), diff = max_diff(a, b, V);
      worst = std::max(worst, diff / scale);
      EXPECT_LE(diff, kReplayTol * scale) << what << ": pass " << p.id << " row " << r << ": max |device - host| "
                                          << diff << ", scale " << scale;
      EXPECT_TRUE(std::all_of(b, b + V, [](float x) { return std::isfinite(x); }))
          << what << ": pass " << p.id << " row " << r;
    }
  }
  EXPECT_GT(token_passes, 0u);
  std::printf("%s: %zu passes replayed on the host dispatcher, %zu of %zu logit rows bit-equal (worst relative "
              "difference %.3g)\n",
              what.c_str(), run.passes.size(), equal_rows, rows, worst);
}

TEST(GpuDeviceEngine, SameBatchesAsTheHostDispatcher) {
  QLLM_REQUIRE_GPU();
  Weights g(open_tiny("qwen3_moe", 143));  // a dense layer between MoE layers
  const auto reqs = workload(g.vocab());
  std::unique_ptr<gpu::GpuHostBackend> host;  // built once the first device backend is gone, then reused
  for (const auto p : {sched::Policy::FcfsIteration, sched::Policy::PriorityLayer, sched::Policy::PriorityExpert}) {
    const std::string what = policy_name(p);
    SCOPED_TRACE(what);
    EngineLimits lim = limits(p);
    lim.queue_prefill = false;  // one pass per slot at a time: each pass's logits are compared
    const DeviceRun run = run_on_device(g, lim, reqs);  // the device backend is destroyed on return
    std::printf("%s: %zu passes, %zu units, %lld preemptions\n", what.c_str(), run.passes.size(), run.units,
                static_cast<long long>(run.preemptions));
    ASSERT_FALSE(run.passes.empty());
    if (p == sched::Policy::FcfsIteration) {
      EXPECT_EQ(run.preemptions, 0);
    } else {
      EXPECT_GT(run.preemptions, 0) << "LS passes arrive while BE passes run";
    }
    // Publish order, pass ids 1, 2, ... (the engine numbers them), one pass
    // per slot at a time: a slot's pass is published after its last one ended.
    for (size_t i = 0; i < run.passes.size(); ++i) EXPECT_EQ(run.passes[i].id, i + 1);
    if (!host) host = std::make_unique<gpu::GpuHostBackend>(g.w, backend_config(lim));
    replay(*host, run, what);
  }
}

// Passes of prompt chunks queued behind running ones (the slot's second
// metadata buffer, begin graphs of both buffers): every pass samples what the
// host dispatcher samples for the same batch.
TEST(GpuDeviceEngine, QueuedPrefillPassesSampleWhatTheHostDispatcherSamples) {
  QLLM_REQUIRE_GPU();
  Weights g(open_tiny("qwen3_moe", 143));
  const auto reqs = workload(g.vocab());
  EngineLimits lim = limits(sched::Policy::PriorityExpert);
  lim.queue_prefill = true;
  const DeviceRun run = run_on_device(g, lim, reqs);
  ASSERT_FALSE(run.passes.empty());
  size_t queued = 0;
  for (const auto& p : run.passes) queued += p.queued;
  EXPECT_GT(queued, 0u) << "prompts longer than a chunk queue their next chunk";
  std::printf("queue_prefill: %zu passes, %zu queued behind a running one\n", run.passes.size(), queued);
  gpu::GpuHostBackend host(g.w, backend_config(lim));
  replay(host, run, "queue_prefill");
}

// ---------------------------------------------------------------------------

// One LS pass taken while a BE request's passes ran, from the loop's records.
struct LsPass {
  uint64_t id = 0;
  double submit_s = -1;   // engine clock: the LS request was submitted
  double seen_s = -1;     // engine clock: its result was collected
  double taken_s = -1;    // the loop took the batch (PassResult.taken_s)
  double first_s = -1;    // its first logged unit (attn[0]) started
  double head_end_s = -1;
  bool be_mid_pass = false;    // the last BE unit before taken_s was not a head: a BE pass was under way
  int be_units_between = 0;    // BE units that started in [taken_s, first_s)
  UnitKind be_before = UnitKind::Done;  // the last BE unit that started before first_s
  bool be_next = false;        // a BE unit started after first_s ...
  double be_next_s = -1;       // ... at this time
};

// Fills what the unit log says about an LS pass taken at p.taken_s.
void analyse(const std::vector<UnitRecord>& log, LsPass& p) {
  const double t = p.taken_s;
  size_t first = log.size();
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].slot == kBeSlot && log[i].start_s < t) p.be_mid_pass = log[i].unit.kind != UnitKind::Head;
    if (log[i].slot == kLsSlot && log[i].start_s >= t && first == log.size()) first = i;
  }
  if (first == log.size()) return;
  p.first_s = log[first].start_s;
  for (size_t i = 0; i < first; ++i)
    if (log[i].slot == kBeSlot) {
      p.be_before = log[i].unit.kind;
      p.be_units_between += log[i].start_s >= t;
    }
  for (size_t i = first; i < log.size(); ++i)
    if (log[i].slot == kLsSlot && log[i].unit.kind == UnitKind::Head) {
      p.head_end_s = log[i].end_s;
      break;
    }
  for (size_t i = first + 1; i < log.size(); ++i)
    if (log[i].slot == kBeSlot) {
      p.be_next = true;
      p.be_next_s = log[i].start_s;
      break;
    }
}

struct BoundaryRun {
  std::vector<LsPass> ls;
  int mid_pass = 0;              // LS passes taken while a BE pass was under way
  double longest_be_unit_s = 0;  // from the unit log
  int64_t preemptions = 0;
};

// A BE request with a 900-token prompt (57 prefill passes of 16 tokens) runs;
// each time a new BE unit of layer 0 shows in the unit log, a one-pass LS
// request (3 tokens, 1 output) is submitted and run to its end, until three
// LS batches were taken while a BE pass was under way (or the BE request ends).
BoundaryRun ls_during_be(const Weights& g, sched::Policy p) {
  const EngineLimits lim = limits(p);
  // The engine's clock starts 0.1 s after the backend's self-test: device
  // times mapped with the self-test's offset would be 0.1 s late.
  DeviceRig rig(g.w, lim, 0.1);
  Engine& e = *rig.engine;
  std::map<uint64_t, double> seen;
  rig.rec->on_result = [&](RecordedPass& rp) { seen[rp.id] = rig.clock->now(); };
  const uint64_t be_id = 1;
  e.submit(req(be_id, PriorityClass::BE, 900, 1, 0.0, false, g.vocab()));
  Driven d;
  BoundaryRun out;
  for (uint64_t ls_id = 100; ls_id < 140 && out.mid_pass < 3; ++ls_id) {
    const size_t from = e.unit_log().size();
    const bool under_way = step_until(e, d, 10.0, [&] {
      if (d.ended(be_id)) return true;
      const auto& log = e.unit_log();
      for (size_t i = from; i < log.size(); ++i)  // layer 0: most of the pass is still ahead
        if (log[i].slot == kBeSlot && log[i].unit.kind != UnitKind::Head && log[i].unit.layer == 0) return true;
      return false;
    });
    EXPECT_TRUE(under_way) << "no BE unit of layer 0 within 10 s";
    if (!under_way || d.ended(be_id)) break;
    LsPass lp;
    lp.submit_s = rig.clock->now();
    e.submit(req(ls_id, PriorityClass::LS, 3, 1, lp.submit_s, false, g.vocab()));
    const bool done = step_until(e, d, 10.0, [&] { return d.ended(ls_id); });
    EXPECT_TRUE(done) << "LS request " << ls_id << " did not end within 10 s";
    if (!done) break;
    const RecordedPass* pass = nullptr;
    for (const auto& rp : rig.rec->passes)
      if (rp.cls == PriorityClass::LS) pass = &rp;
    EXPECT_NE(pass, nullptr);
    if (pass == nullptr) break;
    EXPECT_EQ(int(pass->result.status), int(PassStatus::Done));
    lp.id = pass->id;
    lp.seen_s = seen.count(pass->id) ? seen.at(pass->id) : -1;
    lp.taken_s = pass->result.taken_s;
    analyse(e.unit_log(), lp);  // be_mid_pass is final now; the rest is filled again at the end
    out.mid_pass += lp.be_mid_pass;
    out.ls.push_back(lp);
  }
  EXPECT_TRUE(step_until(e, d, 30.0, [&] { return e.idle(); })) << "the BE request did not end within 30 s";
  EXPECT_EQ(d.ended(be_id) ? int(d.finish.at(be_id)) : -1, int(Finish::Length));
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);
  EXPECT_EQ(rig.dev->dropped_timings(), 0u);
  const auto& log = e.unit_log();
  for (auto& lp : out.ls) {
    const double taken = lp.taken_s;
    lp = LsPass{lp.id, lp.submit_s, lp.seen_s, taken};
    analyse(log, lp);
  }
  for (const auto& u : log)
    if (u.slot == kBeSlot) out.longest_be_unit_s = std::max(out.longest_be_unit_s, u.end_s - u.start_s);
  out.preemptions = e.num_preemptions();
  std::printf("%s: %zu LS passes, %d taken while a BE pass was under way; longest BE unit %.1f us, %lld "
              "preemptions\n",
              policy_name(p), out.ls.size(), out.mid_pass, out.longest_be_unit_s * 1e6,
              static_cast<long long>(out.preemptions));
  return out;
}

// The loop's times are on the engine's clock: the LS batch was taken after
// it was submitted and before its result was collected (a 2 ms allowance
// for the mapping's latency and the engine's polling).
void expect_on_engine_clock(const LsPass& lp) {
  EXPECT_GE(lp.taken_s, 0.0) << "pass " << lp.id << ": no PassStart record";
  EXPECT_GE(lp.taken_s, lp.submit_s - 1e-4) << "pass " << lp.id;
  EXPECT_LE(lp.taken_s, lp.seen_s + 2e-3) << "pass " << lp.id;
  EXPECT_LE(lp.first_s, lp.seen_s + 2e-3) << "pass " << lp.id;
}

TEST(GpuDeviceEngine, LsStartsAtTheNextUnitBoundary) {
  QLLM_REQUIRE_GPU();
  Weights g(open_tiny("qwen3_moe", 143));
  {
    SCOPED_TRACE("priority-expert");
    const BoundaryRun b = ls_during_be(g, sched::Policy::PriorityExpert);
    ASSERT_FALSE(b.ls.empty());
    ASSERT_GE(b.mid_pass, 1) << "no LS batch was taken while a BE pass was under way";
    EXPECT_GT(b.preemptions, 0);
    for (const auto& lp : b.ls) {
      SCOPED_TRACE("LS pass " + std::to_string(lp.id));
      expect_on_engine_clock(lp);
      ASSERT_GE(lp.first_s, 0.0) << "no unit of the LS pass in the log";
      // Taken at a cycle, after the unit then running retired: the LS begin
      // unit and its attn[0] follow, with no BE unit in between.
      EXPECT_EQ(lp.be_units_between, 0);
      EXPECT_LE(lp.first_s - lp.taken_s, b.longest_be_unit_s + 50e-6)
          << "the LS pass waited " << (lp.first_s - lp.taken_s) * 1e6 << " us for its first unit";
      if (!lp.be_mid_pass) continue;
      // Preempted, not finished first: the BE pass's next unit comes after the LS pass's head.
      EXPECT_NE(lp.be_before, UnitKind::Head);
      EXPECT_TRUE(lp.be_next) << "the BE pass did not resume";
      EXPECT_GE(lp.be_next_s, lp.head_end_s - 1e-7) << "a BE unit ran before the LS pass ended";
    }
  }
  {
    SCOPED_TRACE("fcfs-iteration");
    const BoundaryRun b = ls_during_be(g, sched::Policy::FcfsIteration);
    ASSERT_FALSE(b.ls.empty());
    ASSERT_GE(b.mid_pass, 1) << "no LS batch was taken while a BE pass was under way";
    EXPECT_EQ(b.preemptions, 0);
    for (const auto& lp : b.ls) {
      SCOPED_TRACE("LS pass " + std::to_string(lp.id));
      expect_on_engine_clock(lp);
      ASSERT_GE(lp.first_s, 0.0) << "no unit of the LS pass in the log";
      if (!lp.be_mid_pass) continue;
      // The BE pass under way ran to its head before the LS pass's first unit.
      EXPECT_EQ(lp.be_before, UnitKind::Head);
      EXPECT_GE(lp.be_units_between, 1);
    }
  }
}

}  // namespace
