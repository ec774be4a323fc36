// Passes queued behind a running one on the device dispatcher, on the CPU
// (tests/sim_device.h: the scheduler loop in a host thread over the reference
// model). A slot holds two passes, each staged in its own metadata buffer:
// the loop takes the queued one the cycle the running one ends, with no host
// action in between; a cancelled queued pass ends before its first unit; the
// engine queues prompt chunks (new prompts and next chunks of running ones),
// and every request still gets the tokens it gets alone, also when the pass
// before a queued chunk fails or the request is cancelled mid-prompt.
#include "engine/core/loop_backend.h"
#include "tests/engine_requests.h"
#include "tests/loop_rig.h"
#include "tests/sim_device.h"
#include "tests/test_errors.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

using namespace qllm;

namespace {

using test::alone;
using test::error_or_empty;
using test::LoopRig;
using test::req;
using test::small_limits;
using test::tiny;
using test::tokens_of;

using Steady = std::chrono::steady_clock;

std::vector<int32_t> prompt_of(size_t n, int vocab) {
  std::vector<int32_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = int32_t((i * 37 + 11) % size_t(vocab));
  return p;
}

// Whether the output ring holds the PassDone of `pass_id` (read without
// draining: the host takes no action).
bool ring_has_done(sched::ControlBlock* cb, uint64_t pass_id) {
  const uint64_t head = sync::load_acquire_sys(&cb->out.dev.head);
  const uint32_t cap = cb->header.out_capacity;
  const sched::OutputRecord* recs = sched::output_records(cb);
  for (uint64_t i = 0; i < head && i < cap; ++i)
    if (recs[i].kind == sched::RecordKind::PassDone && recs[i].pass_id == pass_id) return true;
  return false;
}

// A prompt in two passes on slot 0 of a simulated device: chunk A (no
// logits, pass 1), then chunk B (samples, pass 2), both published at once,
// before the loop (every unit slowed by `pause`) has finished A.
struct TwoChunks {
  const test::Fixture& f;
  test::SimDevice dev;
  LoopBackend backend;
  WallClock clock;
  std::vector<int32_t> prompt;
  std::vector<int32_t> table{0, 1, 2};
  std::vector<cpu::SeqChunk> a, b;
  SampleSpec greedy{};

  TwoChunks(PriorityClass cls, std::chrono::microseconds pause)
      : f(tiny("mixtral")), dev(f.model, small_limits(sched::Policy::PriorityExpert), options(pause)),
        backend(f.model.desc(), dev.control_block(), dev), prompt(prompt_of(20, f.ck.desc().vocab)) {
    a = {{std::span(prompt).subspan(0, 12), 0, table, false}};
    b = {{std::span(prompt).subspan(12), 12, table, true}};
    backend.attach({}, clock);
    backend.publish(0, 1, cls, a, {});
    backend.publish(0, 2, cls, b, std::span(&greedy, 1));
  }
  static test::SimDeviceOptions options(std::chrono::microseconds pause) {
    test::SimDeviceOptions o;
    o.unit_pause = pause;
    return o;
  }
  // Collects until `n` results came in (20 s at most).
  void collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, size_t n) {
    const auto t0 = Steady::now();
    while (done.size() < n && Steady::now() - t0 < std::chrono::seconds(20)) backend.collect(done, units, 0.01, clock);
  }
  // The tokens the whole prompt gets alone: what B must sample.
  std::vector<int32_t> alone_token() const { return alone(f.model, req(9, PriorityClass::LS, prompt, 1, 0)); }
};

TEST(LoopQueue, APassQueuedBehindRunsWithNoHostRoundTrip) {
  TwoChunks c(PriorityClass::LS, std::chrono::milliseconds(1));
  EXPECT_EQ(c.backend.in_flight(), 2u);
  // The host does nothing until the loop has finished both passes.
  const auto t0 = Steady::now();
  while (!ring_has_done(c.dev.control_block(), 2) && Steady::now() - t0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(ring_has_done(c.dev.control_block(), 2)) << "the queued pass did not run without the host";
  std::vector<PassResult> done;
  std::vector<UnitRecord> units;
  c.backend.collect(done, units, 1.0, c.clock);  // one drain: both passes are in the ring
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].pass_id, 1u);
  EXPECT_EQ(done[1].pass_id, 2u);
  EXPECT_EQ(done[0].status, PassStatus::Done);
  EXPECT_EQ(done[1].status, PassStatus::Done);
  EXPECT_TRUE(done[0].tokens.empty());
  // B attended over the KV A wrote: the prompt's first token, as alone.
  EXPECT_EQ(done[1].tokens, c.alone_token());
  // The loop's records: A's units, then B's, B taken once A's last unit ended.
  ASSERT_FALSE(units.empty());
  double a_end = -1;
  bool b_seen = false;
  for (const auto& u : units) {
    if (u.pass_id == 1) {
      EXPECT_FALSE(b_seen) << "a unit of A after B started";
      a_end = std::max(a_end, u.end_s);
    } else {
      EXPECT_EQ(u.pass_id, 2u);
      b_seen = true;
    }
  }
  EXPECT_TRUE(b_seen);
  EXPECT_GE(done[1].taken_s, a_end - 1e-6);
  EXPECT_EQ(c.backend.in_flight(), 0u);
}

TEST(LoopQueue, ACancelledQueuedPassEndsBeforeItsFirstUnit) {
  TwoChunks c(PriorityClass::BE, std::chrono::milliseconds(2));
  c.backend.cancel(2);  // while A runs (tens of units of 2 ms): B is not taken yet
  std::vector<PassResult> done;
  std::vector<UnitRecord> units;
  c.collect(done, units, 2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].status, PassStatus::Done);
  EXPECT_EQ(done[1].pass_id, 2u);
  EXPECT_EQ(done[1].status, PassStatus::Cancelled);
  EXPECT_TRUE(done[1].tokens.empty());
  for (const auto& u : units) EXPECT_NE(u.pass_id, 2u) << "a unit of the cancelled pass ran";
  // The slot goes on: its next pass (the other metadata buffer again) runs.
  c.backend.publish(0, 3, PriorityClass::BE, c.b, std::span(&c.greedy, 1));
  done.clear();
  c.collect(done, units, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].status, PassStatus::Done);
  EXPECT_EQ(done[0].tokens, c.alone_token());
}

TEST(LoopQueue, AThirdPassOnASlotIsRefused) {
  TwoChunks c(PriorityClass::BE, std::chrono::milliseconds(2));
  EXPECT_HAS(test::error_of([&] { c.backend.publish(0, 3, PriorityClass::BE, c.a, {}); }),
             "already holds passes 1 and 2");
  std::vector<PassResult> rest;
  EXPECT_TRUE(c.backend.shutdown(5.0, rest, c.clock));
  EXPECT_EQ(rest.size(), 2u);
}

// Long prompts, several chunks each, LS and BE: with queue_prefill the
// engine publishes next chunks (and new prompts) behind running passes;
// either way every request gets its tokens alone.
std::vector<Request> long_prompts(int vocab) {
  std::vector<Request> r;
  const size_t len[] = {50, 7, 33, 41, 18, 64};
  for (size_t i = 0; i < 6; ++i) {
    auto p = prompt_of(len[i], vocab);
    for (auto& t : p) t = int32_t((size_t(t) + i * 101) % size_t(vocab));
    r.push_back(req(i + 1, i % 3 == 0 ? PriorityClass::LS : PriorityClass::BE, p, 3 + int(i), 0.002 * double(i),
                    i % 2 ? 0.8 : 0.0));
  }
  return r;
}

class QueuePrefill : public ::testing::TestWithParam<bool> {};

TEST_P(QueuePrefill, EveryRequestGetsItsTokensAlone) {
  const auto& f = tiny("qwen3_moe");
  EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  lim.queue_prefill = GetParam();
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::microseconds(200);
  LoopRig rig(f.model, lim, opt);
  const auto reqs = long_prompts(f.ck.desc().vocab);
  const auto got = test::drive(rig.engine, rig.clock, reqs);
  for (const auto& r : reqs) EXPECT_EQ(got.at(r.id), alone(f.model, r)) << "request " << r.id;
  EXPECT_TRUE(rig.engine.idle());
  EXPECT_EQ(rig.engine.blocks().num_free_blocks(), lim.kv_blocks);
  size_t queued = 0;
  for (const auto& p : rig.recorder.passes) {
    queued += p.queued;
    if (!p.queued) continue;
    // A queued pass holds prompt chunks only: no decode row.
    for (size_t i = 0; i < p.tokens.size(); ++i) {
      bool in_prompt = false;
      for (const auto& r : reqs)
        in_prompt = in_prompt || (size_t(p.pos[i]) + p.tokens[i].size() <= r.prompt.size() &&
                                  std::equal(p.tokens[i].begin(), p.tokens[i].end(), r.prompt.begin() + p.pos[i]));
      EXPECT_TRUE(in_prompt) << "pass " << p.id << " chunk " << i << " is not a prompt chunk";
    }
  }
  if (GetParam()) {
    EXPECT_GT(queued, 0u);
  } else {
    EXPECT_EQ(queued, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(OnOff, QueuePrefill, ::testing::Bool());

TEST(LoopQueue, AFailedPassMakesTheChunkQueuedBehindItRunAgain) {
  const auto& f = tiny("mixtral");
  EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::microseconds(500);
  LoopRig rig(f.model, lim, opt);
  const auto a = req(1, PriorityClass::LS, prompt_of(40, f.ck.desc().vocab), 4, 0);  // chunks of 16, 16, 8
  rig.dev.inject_error_word(0);  // the first pass fails at its first attn unit
  rig.engine.submit(a);
  std::vector<TokenEvent> all, ev;
  std::string err;
  const auto t0 = Steady::now();
  while (!rig.engine.idle() && Steady::now() - t0 < std::chrono::seconds(20)) {
    ev.clear();
    const std::string e = error_or_empty([&] { rig.engine.step(ev); });
    if (!e.empty()) err = e;
    all.insert(all.end(), ev.begin(), ev.end());
  }
  EXPECT_HAS(err, "bad per-step data");
  ASSERT_GE(rig.recorder.passes.size(), 3u);
  EXPECT_EQ(rig.recorder.passes[0].result.status, PassStatus::Failed);
  EXPECT_TRUE(rig.recorder.passes[1].queued) << "the second chunk was queued behind the first";
  EXPECT_EQ(rig.recorder.passes[1].pos.at(0), 16);
  EXPECT_EQ(tokens_of(all).at(1), alone(f.model, a)) << "both chunks ran again";
  EXPECT_EQ(rig.engine.blocks().num_free_blocks(), lim.kv_blocks);
}

TEST(LoopQueue, CancellingARequestInTwoPassesEndsItOnce) {
  const auto& f = tiny("mixtral");
  EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::milliseconds(2);
  LoopRig rig(f.model, lim, opt);
  rig.engine.submit(req(1, PriorityClass::BE, prompt_of(48, f.ck.desc().vocab), 4, 0));
  rig.step_until([&](const auto&) { return !rig.engine.unit_log().empty(); });
  ASSERT_EQ(rig.recorder.passes.size(), 2u);
  EXPECT_TRUE(rig.recorder.passes[1].queued);
  std::vector<TokenEvent> ev;
  ASSERT_TRUE(rig.engine.cancel(1, ev));
  EXPECT_TRUE(ev.empty()) << "it ends with its passes";
  const auto all = rig.step_until([&](const auto&) { return rig.engine.idle(); });
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].finish, Finish::Cancelled);
  for (const auto& p : rig.recorder.passes) EXPECT_EQ(p.result.status, PassStatus::Cancelled) << "pass " << p.id;
  EXPECT_EQ(rig.engine.blocks().num_free_blocks(), lim.kv_blocks);
  // The engine goes on serving.
  const auto r = req(2, PriorityClass::BE, prompt_of(30, f.ck.desc().vocab), 3, rig.clock.now());
  rig.engine.submit(r);
  EXPECT_EQ(tokens_of(rig.step_until([&](const auto&) { return rig.engine.idle(); })).at(2), alone(f.model, r));
}

TEST(LoopQueue, AFreeSlotTakesANewPromptBeforeAQueue) {
  const auto& f = tiny("mixtral");
  EngineLimits lim = small_limits(sched::Policy::PriorityExpert);
  lim.ls_slots = 2;
  lim.be_slots = 0;
  test::SimDeviceOptions opt;
  opt.unit_pause = std::chrono::microseconds(500);
  LoopRig rig(f.model, lim, opt);
  const auto a = req(1, PriorityClass::LS, {3, 4, 5, 6}, 12, 0);
  rig.engine.submit(a);
  rig.step_until([&](const auto&) { return !rig.engine.unit_log().empty(); });
  const auto b = req(2, PriorityClass::LS, prompt_of(10, f.ck.desc().vocab), 3, rig.clock.now());
  rig.engine.submit(b);
  const auto got = tokens_of(rig.step_until([&](const auto&) { return rig.engine.idle(); }));
  EXPECT_EQ(got.at(1), alone(f.model, a));
  EXPECT_EQ(got.at(2), alone(f.model, b));
  const test::RecordedPass* first_b = nullptr;
  for (const auto& p : rig.recorder.passes)
    for (size_t i = 0; i < p.tokens.size(); ++i)
      if (!first_b && p.pos[i] == 0 && p.tokens[i] == b.prompt) first_b = &p;
  ASSERT_NE(first_b, nullptr);
  EXPECT_EQ(first_b->slot, 1) << "the idle LS slot takes it";
  EXPECT_FALSE(first_b->queued);
}

}  // namespace
