// The device dispatcher on the CPU: the engine over LoopBackend, with the
// scheduler loop (device_scheduler/loop.h, the code the GPU runs) in a host
// thread over the reference model (tests/sim_device.h), in real time. Every
// request gets the tokens it gets alone under every policy, a small output
// ring only slows the loop down, an LS pass starts at the boundary its policy
// promises (read from the unit log the loop writes), cancellation stops a
// pass between units, shutdown mid-workload reports every pass once, and
// device-side errors surface as messages without losing other requests' work.
#include "engine/core/loop_backend.h"
#include "tests/engine_requests.h"
#include "tests/loop_rig.h"
#include "tests/pass_recorder.h"
#include "tests/sim_device.h"
#include "tests/test_errors.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

using namespace qllm;

namespace {

using test::alone;
using test::random_mix;
using test::req;
using test::tiny;

using test::error_or_empty;
using test::LoopRig;
using test::small_limits;
using test::tokens_of;

class LoopPolicies : public ::testing::TestWithParam<sched::Policy> {};

TEST_P(LoopPolicies, EveryRequestGetsTheTokensItGetsAlone) {
  const auto& f = tiny("qwen3_moe");
  const EngineLimits lim = small_limits(GetParam());
  LoopRig rig(f.model, lim);
  auto reqs = random_mix(24, f.ck.desc().vocab, 5);
  for (auto& r : reqs) r.arrival_s *= 0.25;  // real time: a quarter of the mix's spread
  const auto got = test::drive(rig.engine, rig.clock, reqs);
  for (const auto& r : reqs) EXPECT_EQ(got.at(r.id), alone(f.model, r)) << "request " << r.id;
  EXPECT_TRUE(rig.engine.idle());
  EXPECT_EQ(rig.engine.blocks().num_free_blocks(), lim.kv_blocks);
  rig.engine.blocks().check_invariants();
  // The unit log comes from the loop's timing records: units of every slot,
  // each with its start before its end, in start order.
  const auto& log = rig.engine.unit_log();
  ASSERT_FALSE(log.empty());
  std::set<int> slots;
  for (size_t i = 0; i < log.size(); ++i) {
    slots.insert(log[i].slot);
    EXPECT_LE(log[i].start_s, log[i].end_s);
    if (i > 0) {
      EXPECT_LE(log[i - 1].start_s, log[i].start_s + 1e-6);
    }
  }
  EXPECT_EQ(slots.size(), 2u);
  EXPECT_EQ(rig.backend.dropped_timings(), 0u);
  std::vector<PassResult> rest;
  ASSERT_TRUE(rig.backend.shutdown(5.0, rest, rig.clock));
  EXPECT_TRUE(rest.empty());
  EXPECT_FALSE(rig.dev.running());
  EXPECT_GT(rig.dev.state().units_launched, 0u);
}

INSTANTIATE_TEST_SUITE_P(All, LoopPolicies,
                         ::testing::Values(sched::Policy::FcfsIteration, sched::Policy::PriorityLayer,
                                           sched::Policy::PriorityExpert));

TEST(LoopBackend, ASmallOutputRingSlowsTheLoopAndLosesNoToken) {
  const auto& f = tiny("olmoe");
  const EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  test::SimDeviceOptions opt;
  opt.out_capacity = 4;  // fewer records than one pass's tokens
  opt.out_timing_reserve = 2;
  LoopRig rig(f.model, lim, opt);
  auto reqs = random_mix(12, f.ck.desc().vocab, 9);
  for (auto& r : reqs) rig.engine.submit(r);
  // A slow drain: the engine looks at the ring every 2 ms.
  const auto got = tokens_of(rig.step_until([&](const auto&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return rig.engine.idle();
  }));
  for (const auto& r : reqs) EXPECT_EQ(got.at(r.id), alone(f.model, r)) << "request " << r.id;
  EXPECT_GT(rig.backend.dropped_timings(), 0u) << "timings must give way to tokens";
  EXPECT_TRUE(rig.engine.idle());
}

// A BE pass of 24 prompt tokens runs with every unit slowed to 2 ms; an LS
// request is submitted once the BE pass has run `be_units` units.
struct Boundary {
  size_t be_units_between = 0;     // BE units that started after the submit, before LS's first
  double ls_wait_s = -1;           // from the loop taking the LS batch to its first unit
  sched::UnitKind be_kind_before;  // BE unit just before LS's first unit
  bool be_resumed_after_ls = false;
  sched::UnitKind be_kind_after = sched::UnitKind::Done;  // its first unit after LS's first
};

Boundary ls_arrival(sched::Policy p, size_t be_units) {
  const auto& f = tiny("mixtral");
  EngineLimits lim;
  lim.policy = p;
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::milliseconds(2);
  LoopRig rig(f.model, lim, opt);
  std::vector<int32_t> prompt(24);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(i * 13 % 500);
  rig.engine.submit(req(1, PriorityClass::BE, prompt, 1, 0.0));
  rig.step_until([&](const auto&) { return rig.engine.unit_log().size() >= be_units; });
  const size_t seen = rig.engine.unit_log().size();
  rig.engine.submit(req(2, PriorityClass::LS, {5, 6, 7}, 1, rig.clock.now()));
  rig.step_until([&](const auto&) { return rig.engine.idle(); });
  EXPECT_TRUE(rig.engine.idle());
  const auto& log = rig.engine.unit_log();
  size_t ls_first = 0;
  while (ls_first < log.size() && log[ls_first].slot != 0) ++ls_first;  // slot 0 is the LS slot
  EXPECT_GE(ls_first, seen);
  EXPECT_LT(ls_first, log.size());
  Boundary b;
  if (ls_first < seen || ls_first >= log.size()) return b;
  b.be_units_between = ls_first - seen;
  for (const auto& pass : rig.recorder.passes)
    if (pass.cls == PriorityClass::LS && pass.result.taken_s >= 0)
      b.ls_wait_s = log[ls_first].start_s - pass.result.taken_s;
  b.be_kind_before = log[ls_first - 1].unit.kind;
  for (size_t i = ls_first; i < log.size(); ++i)
    if (log[i].slot == 1) {
      b.be_resumed_after_ls = true;
      b.be_kind_after = log[i].unit.kind;
      break;
    }
  return b;
}

TEST(LoopBackend, PriorityExpertStartsLsAtTheNextUnit) {
  const auto b = ls_arrival(sched::Policy::PriorityExpert, 2);  // attn[0] and an expert have run
  // The unit running at the submit finishes; at most one more may start while
  // the engine forms and publishes the batch (its wait is 0.1 ms, a unit 2 ms).
  EXPECT_LE(b.be_units_between, 2u);
  EXPECT_TRUE(b.be_resumed_after_ls) << "the BE pass must be preempted, not finished first";
  // From the loop's own records: the LS batch waited at most for the BE unit
  // that was running when it was taken (2 ms, and some slack for the host).
  EXPECT_GE(b.ls_wait_s, 0.0);
  EXPECT_LT(b.ls_wait_s, 0.004);
}

TEST(LoopBackend, PriorityLayerStartsLsAtTheNextLayer) {
  const auto b = ls_arrival(sched::Policy::PriorityLayer, 2);
  EXPECT_TRUE(b.be_resumed_after_ls);
  EXPECT_NE(b.be_kind_after, sched::UnitKind::Expert);  // BE resumes at an attn unit (or the head)
}

TEST(LoopBackend, FcfsIterationFinishesTheBePassFirst) {
  const auto b = ls_arrival(sched::Policy::FcfsIteration, 2);
  EXPECT_EQ(b.be_kind_before, sched::UnitKind::Head);
  EXPECT_FALSE(b.be_resumed_after_ls);
  EXPECT_GT(b.ls_wait_s, 0.004) << "the LS batch waits for the rest of the BE pass";
}

// One backend serves one engine after another, each with its own policy:
// the policy lives in the loop, and each engine sets its own.
TEST(LoopBackend, EachEngineSetsTheLoopsPolicy) {
  const auto& f = tiny("mixtral");
  EngineLimits lim;
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::milliseconds(1);
  lim.policy = sched::Policy::PriorityExpert;  // what the loop starts with
  test::SimDevice dev(f.model, lim, opt);
  LoopBackend backend(f.model.desc(), dev.control_block(), dev);
  std::vector<int32_t> prompt(24);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(i * 13 % 500);
  for (const auto p : {sched::Policy::FcfsIteration, sched::Policy::PriorityExpert, sched::Policy::FcfsIteration}) {
    lim.policy = p;
    RealTimeClock clock;
    Engine e(backend, lim, clock);
    e.submit(req(1, PriorityClass::BE, prompt, 1, 0.0));
    std::vector<TokenEvent> ev;
    const auto t0 = std::chrono::steady_clock::now();
    while (e.unit_log().size() < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) e.step(ev);
    e.submit(req(2, PriorityClass::LS, {5, 6, 7}, 1, clock.now()));
    while (!e.idle() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) e.step(ev);
    ASSERT_TRUE(e.idle());
    if (p == sched::Policy::FcfsIteration) {
      EXPECT_EQ(e.num_preemptions(), 0);
    } else {
      EXPECT_GT(e.num_preemptions(), 0);
    }
    // Unit times are on this engine's clock (which started at 0 just now).
    EXPECT_GE(e.unit_log().front().start_s, -1e-3);
    EXPECT_LT(e.unit_log().back().end_s, clock.now() + 1e-3);
  }
}

TEST(LoopBackend, CancelStopsThePassBetweenUnits) {
  const auto& f = tiny("mixtral");
  const EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::milliseconds(2);
  LoopRig rig(f.model, lim, opt);
  std::vector<int32_t> prompt(12, 3);
  rig.engine.submit(req(1, PriorityClass::BE, prompt, 4, 0));
  rig.step_until([&](const auto&) { return !rig.engine.unit_log().empty(); });
  std::vector<TokenEvent> ev;
  ASSERT_TRUE(rig.engine.cancel(1, ev));
  auto all = rig.step_until([](const auto& e) { return !e.empty(); });
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].finish, Finish::Cancelled);
  bool head = false;
  for (const auto& u : rig.engine.unit_log()) head = head || u.unit.kind == sched::UnitKind::Head;
  EXPECT_FALSE(head) << "the cancelled pass stopped before its head";
  EXPECT_TRUE(rig.engine.idle());
  EXPECT_EQ(rig.engine.blocks().num_free_blocks(), lim.kv_blocks);
  // The loop goes on serving.
  const auto r = req(2, PriorityClass::LS, {4, 5}, 3, rig.clock.now());
  rig.engine.submit(r);
  EXPECT_EQ(tokens_of(rig.step_until([&](const auto&) { return rig.engine.idle(); })).at(2), alone(f.model, r));
}

TEST(LoopBackend, ShutdownMidWorkloadReportsEveryPassOnce) {
  const auto& f = tiny("olmoe");
  const EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::microseconds(500);
  LoopRig rig(f.model, lim, opt);
  auto reqs = random_mix(10, f.ck.desc().vocab, 2);
  for (auto& r : reqs) {
    r.arrival_s = 0;
    rig.engine.submit(r);
  }
  rig.step_until([&](const auto&) { return rig.engine.unit_log().size() >= 6; });
  // Both slots busy, each perhaps with a pass of prompt chunks queued behind.
  const size_t in_flight = rig.backend.in_flight();
  ASSERT_GE(in_flight, 2u) << "both slots busy at the shutdown";
  ASSERT_LE(in_flight, 4u);
  std::vector<PassResult> rest;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rig.backend.shutdown(5.0, rest, rig.clock));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  EXPECT_EQ(rig.backend.in_flight(), 0u);
  std::set<int> slots;
  std::set<uint64_t> ids;
  for (const auto& r : rest) {
    slots.insert(r.slot);
    EXPECT_TRUE(ids.insert(r.pass_id).second) << "pass " << r.pass_id << " reported twice";
    if (r.status != PassStatus::Done) {
      EXPECT_EQ(r.status, PassStatus::Abandoned);
    }
  }
  EXPECT_EQ(rest.size(), in_flight) << "every pass in flight is reported";
  EXPECT_EQ(slots.size(), 2u);
  EXPECT_FALSE(rig.dev.running());
  EXPECT_GE(rig.dev.state().end.shutdown_acked, 1u);
  // The engine is told plainly that the loop is gone.
  std::vector<TokenEvent> ev;
  EXPECT_HAS(test::error_of([&] { rig.engine.step(ev); }), "shut down");
}

TEST(LoopBackend, ABadExpertCountStopsTheLoopWithAMessage) {
  const auto& f = tiny("mixtral");
  LoopRig rig(f.model, small_limits(sched::Policy::PriorityExpert));
  rig.dev.inject_bad_count(1);
  rig.engine.submit(req(1, PriorityClass::BE, {1, 2, 3}, 2, 0));
  std::vector<TokenEvent> ev;
  std::string err;
  const auto t0 = std::chrono::steady_clock::now();
  while (err.empty() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
    err = error_or_empty([&] { rig.engine.step(ev); });
  EXPECT_HAS(err, "out-of-range expert count");
  EXPECT_FALSE(rig.dev.running());
  EXPECT_HAS(test::error_of([&] { rig.engine.step(ev); }), "out-of-range expert count");
}

TEST(LoopBackend, AKernelErrorFailsOnePassAndLosesNoWork) {
  const auto& f = tiny("mixtral");
  const EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  LoopRig rig(f.model, lim);
  const auto a = req(1, PriorityClass::BE, {1, 2, 3}, 4, 0);
  const auto b = req(2, PriorityClass::LS, {7, 8}, 4, 0);
  rig.dev.inject_error_word(0);
  rig.engine.submit(a);
  rig.engine.submit(b);
  std::vector<TokenEvent> all, ev;
  std::string err;
  const auto t0 = std::chrono::steady_clock::now();
  while (!rig.engine.idle() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    ev.clear();
    const std::string e = error_or_empty([&] { rig.engine.step(ev); });
    if (!e.empty()) err = e;
    all.insert(all.end(), ev.begin(), ev.end());
  }
  EXPECT_HAS(err, "bad per-step data");
  EXPECT_TRUE(rig.dev.running()) << "one failed pass does not stop the loop";
  const auto got = tokens_of(all);
  EXPECT_EQ(got.at(1), alone(f.model, a));  // the failed pass's sequences ran again
  EXPECT_EQ(got.at(2), alone(f.model, b));
}

}  // namespace
