// profiling/dispatch_drivers.h, the drivers of qllm_bench_dispatch, on the CPU:
// the host dispatcher's driving over CpuBackend (a UnitBackend) and the
// device dispatcher's over LoopBackend with the scheduler loop in a host
// thread (tests/sim_device.h). What the GPU run relies on:
//
//   PassesRunTheSameUnitsEitherWay  a decode pass runs as many units driven
//       unit by unit as the loop reports for it; the span is within the wall
//   PreemptionSamplesAreConsistent  per policy, every sample kept (none
//       missing), times in causal order (arrival <= publish <= PassStart <=
//       first unit: the re-mapping only ever makes latencies longer), and
//       BE passes split by LS units only where the policy allows it: never
//       under fcfs-iteration, some under priority-expert
#include "engine/core/cpu_engine.h"
#include "engine/core/loop_backend.h"
#include "profiling/dispatch_drivers.h"
#include "tests/engine_requests.h"
#include "tests/sim_device.h"

#include <gtest/gtest.h>

#include <chrono>

using namespace qllm;

namespace {

constexpr int kContext = 40, kBlock = 8, kBePrompt = 48, kDecodeBatch = 4;

struct Passes {
  bench::PassInput decode, ls, be;
  int kv_blocks = 0;
};

Passes passes(int vocab) {
  Passes p;
  p.decode = bench::decode_pass(kDecodeBatch, kContext, kBlock, vocab);
  p.ls = bench::decode_pass(1, kContext, kBlock, vocab);
  auto be = bench::prefill_passes(kBePrompt, kBePrompt, kBlock, vocab);
  p.be = std::move(be.front());
  const int ls_region = kDecodeBatch * bench::ceil_div(kContext + 1, kBlock);
  bench::offset_blocks(p.be, ls_region);
  p.kv_blocks = ls_region + bench::ceil_div(kBePrompt, kBlock);
  return p;
}

// The simulated device dispatcher: the loop thread and its host half.
struct SimDispatcher {
  test::SimDevice dev;
  LoopBackend backend;

  SimDispatcher(const cpu::ReferenceModel& m, int kv_blocks, std::chrono::microseconds pause)
      : dev(m, limits(kv_blocks), options(pause)), backend(m.desc(), dev.control_block(), dev) {}
  ~SimDispatcher() {
    std::vector<PassResult> rest;
    WallClock clock;
    backend.shutdown(5.0, rest, clock);
  }

  static EngineLimits limits(int kv_blocks) {
    EngineLimits l;
    l.kv_blocks = kv_blocks;
    l.block_size = kBlock;
    l.be_max_wait_s = 0;
    return l;
  }
  static test::SimDeviceOptions options(std::chrono::microseconds pause) {
    test::SimDeviceOptions o;
    o.unit_pause = pause;
    o.out_capacity = 4096;
    o.out_timing_reserve = 1024;
    return o;
  }
};

TEST(BenchDispatchDrivers, PassesRunTheSameUnitsEitherWay) {
  const auto& f = test::tiny("olmoe");
  const Passes p = passes(f.model.desc().vocab);
  CpuBackend host(f.model, bench::kSlots, p.kv_blocks, kBlock);
  const int units = bench::host_engine_pass(host, bench::kLs, p.decode);
  EXPECT_GT(units, f.model.desc().layers + 1);  // attn per layer, some experts, the head

  SimDispatcher sim(f.model, p.kv_blocks, std::chrono::microseconds(0));
  uint64_t next_id = 1;
  const bench::Timing t = bench::time_device_passes(sim.backend, p.decode, 1, 5, next_id);
  ASSERT_EQ(t.wall_ms.size(), 5u);
  ASSERT_EQ(t.span_ms.size(), 5u);
  EXPECT_EQ(t.units, units);
  EXPECT_FALSE(t.units_vary);
  for (size_t i = 0; i < t.wall_ms.size(); ++i) {
    EXPECT_GT(t.span_ms[i], 0.0);
    EXPECT_LE(t.span_ms[i], t.wall_ms[i] + 0.05);  // mapped onto the host clock: within its error
  }
  EXPECT_EQ(next_id, 7u);
}

TEST(BenchDispatchDrivers, PreemptionSamplesAreConsistent) {
  const auto& f = test::tiny("olmoe");
  const Passes p = passes(f.model.desc().vocab);
  bench::PreemptionOptions o;
  o.warmup = 2;
  o.samples = 20;
  CpuBackend host(f.model, bench::kSlots, p.kv_blocks, kBlock);
  // Units take at least 100 us, so a BE pass is long enough to be overtaken.
  SimDispatcher sim(f.model, p.kv_blocks, std::chrono::microseconds(100));
  uint64_t next_id = 1;
  for (sched::Policy policy :
       {sched::Policy::FcfsIteration, sched::Policy::PriorityLayer, sched::Policy::PriorityExpert}) {
    SCOPED_TRACE(int(policy));
    const bench::PreemptionRun h = bench::host_preemption(host, policy, p.ls, p.be, o);
    ASSERT_EQ(h.samples.size(), size_t(o.samples));
    for (const auto& s : h.samples) {
      EXPECT_LE(s.arrival_s, s.noticed_s);
      EXPECT_LE(s.noticed_s, s.first_s);
    }
    EXPECT_GT(h.be_passes, 0);
    EXPECT_GT(h.seconds, 0.0);

    const bench::PreemptionRun d = bench::device_preemption(sim.backend, policy, p.ls, p.be, o, next_id);
    ASSERT_EQ(d.samples.size(), size_t(o.samples));
    EXPECT_EQ(d.missing_first, 0);
    for (const auto& s : d.samples) {
      EXPECT_LE(s.arrival_s, s.noticed_s);
      EXPECT_LT(s.noticed_s, s.taken_s);  // the loop took the pass after it was published
      EXPECT_LT(s.taken_s, s.first_s);    // and ran its begin unit before the first attn
    }
    EXPECT_GT(d.be_passes, 0);
    if (policy == sched::Policy::FcfsIteration) {
      EXPECT_EQ(h.be_preempted, 0);
      EXPECT_EQ(d.be_preempted, 0);
    }
    if (policy == sched::Policy::PriorityExpert) {
      EXPECT_GT(h.be_preempted, 0);
      EXPECT_GT(d.be_preempted, 0);
    }
  }
}

}  // namespace
