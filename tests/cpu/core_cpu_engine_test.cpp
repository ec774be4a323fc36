// The engine on the cpu dispatcher, on a fake clock: continuous batching,
// slots, policies and preemption never change a request's tokens, LS work
// starts at the boundary its policy promises, and KV blocks all come back.
#include "engine/core/cpu_engine.h"
#include "tests/engine_requests.h"
#include "tests/test_errors.h"
#include "tests/test_paths.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace qllm;

namespace {

using test::alone;
using test::drive;
using test::random_mix;
using test::req;
using test::tiny;

class Policies : public ::testing::TestWithParam<sched::Policy> {};

TEST_P(Policies, EveryRequestGetsTheTokensItGetsAlone) {
  const auto& f = tiny("qwen3_moe");
  EngineLimits lim;
  lim.policy = GetParam();
  lim.max_tokens_per_step = 48;
  lim.prefill_chunk = 16;
  lim.max_seqs_per_step = 6;
  lim.kv_blocks = 64;
  lim.block_size = 8;
  FakeClock clock(1e-3);
  CpuEngine e(f.model, lim, clock);
  const auto reqs = random_mix(30, f.ck.desc().vocab, 3);
  const auto got = drive(e, clock, reqs);
  for (const auto& r : reqs) EXPECT_EQ(got.at(r.id), alone(f.model, r)) << "request " << r.id;
  EXPECT_TRUE(e.idle());
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);  // no block leaked
  e.blocks().check_invariants();
  for (const auto& [id, t] : e.timings()) {
    EXPECT_GE(t.first_token_s, t.arrival_s);
    EXPECT_GE(t.finish_s, t.first_token_s);
    EXPECT_EQ(t.finish, Finish::Length);
  }
  if (GetParam() == sched::Policy::FcfsIteration) {
    EXPECT_EQ(e.num_preemptions(), 0);
  } else {
    EXPECT_GT(e.num_preemptions(), 0) << "the mix must exercise preempted passes";
  }
}

INSTANTIATE_TEST_SUITE_P(All, Policies,
                         ::testing::Values(sched::Policy::FcfsIteration, sched::Policy::PriorityLayer,
                                           sched::Policy::PriorityExpert));

// An LS request arrives while a BE pass is in the experts of layer 0. Returns
// (kind of the BE unit just before LS's first unit, its layer, BE units left
// in the pass after LS started).
struct Boundary {
  sched::UnitKind be_kind_before;  // BE unit that ran just before LS's first unit
  sched::UnitKind be_kind_after;   // BE's next unit once it resumes (Done: none)
  bool be_pass_done_before_ls;
};

Boundary ls_arrival(sched::Policy p) {
  const auto& f = tiny("mixtral");
  EngineLimits lim;
  lim.policy = p;
  FakeClock clock(1e-3);
  CpuEngine e(f.model, lim, clock);
  std::vector<int32_t> prompt(24);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(i * 13 % 500);
  // BE arrives at 0; units cost 1 ms: attn[0] is [0,1), its first expert [1,2).
  auto reqs = std::vector<Request>{req(1, PriorityClass::BE, prompt, 1, 0.0),
                                   req(2, PriorityClass::LS, {5, 6, 7}, 1, 0.0015)};
  drive(e, clock, reqs);
  const auto& log = e.unit_log();
  size_t ls_first = 0;
  while (ls_first < log.size() && log[ls_first].slot != 0) ++ls_first;  // slot 0 is the LS slot
  EXPECT_GT(ls_first, 0u);
  EXPECT_LT(ls_first, log.size());
  Boundary b{log[ls_first - 1].unit.kind, sched::UnitKind::Done, true};
  for (size_t i = ls_first; i < log.size(); ++i)
    if (log[i].slot == 1) {
      if (b.be_pass_done_before_ls) b.be_kind_after = log[i].unit.kind;
      b.be_pass_done_before_ls = false;
    }
  return b;
}

TEST(CpuEngine, PriorityExpertPreemptsAtTheNextExpert) {
  const auto b = ls_arrival(sched::Policy::PriorityExpert);
  EXPECT_EQ(b.be_kind_before, sched::UnitKind::Expert);
  EXPECT_EQ(b.be_kind_after, sched::UnitKind::Expert);  // stopped between two experts
  EXPECT_FALSE(b.be_pass_done_before_ls);
}

TEST(CpuEngine, PriorityLayerPreemptsAtTheLayerBoundary) {
  const auto b = ls_arrival(sched::Policy::PriorityLayer);
  EXPECT_EQ(b.be_kind_before, sched::UnitKind::Expert);  // the layer's last expert
  EXPECT_EQ(b.be_kind_after, sched::UnitKind::Attn);     // resumes with the next layer
  EXPECT_FALSE(b.be_pass_done_before_ls);
}

TEST(CpuEngine, FcfsIterationFinishesThePassFirst) {
  const auto b = ls_arrival(sched::Policy::FcfsIteration);
  EXPECT_EQ(b.be_kind_before, sched::UnitKind::Head);
  EXPECT_TRUE(b.be_pass_done_before_ls);
}

TEST(CpuEngine, BadRequestsAreRefusedAndDisturbNothing) {
  const auto& f = tiny("olmoe");
  EngineLimits lim;
  lim.kv_blocks = 8;
  lim.block_size = 4;
  FakeClock clock;
  CpuEngine e(f.model, lim, clock);
  const auto ok = req(1, PriorityClass::BE, {1, 2, 3}, 4, 0);
  e.submit(ok);
  EXPECT_HAS(test::error_of([&] { e.submit(req(2, PriorityClass::LS, {}, 4, 0)); }), "empty");
  EXPECT_HAS(test::error_of([&] { e.submit(req(3, PriorityClass::LS, {1, 999999}, 4, 0)); }), "999999");
  EXPECT_HAS(test::error_of([&] { e.submit(req(4, PriorityClass::LS, std::vector<int32_t>(30, 1), 4, 0)); }),
             "exceeds");
  EXPECT_HAS(test::error_of([&] { e.submit(req(1, PriorityClass::LS, {1}, 1, 0)); }), "duplicate");
  const auto got = drive(e, clock, {});
  EXPECT_EQ(got.at(1), alone(f.model, ok));
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);
}

TEST(CpuEngine, StopTokenEndsTheRequest) {
  const auto& f = tiny("mixtral");
  auto r = req(1, PriorityClass::LS, {4, 5, 6}, 8, 0);
  const auto free_run = alone(f.model, r);
  ASSERT_GE(free_run.size(), 3u);
  r.stop_ids = {free_run[2]};
  FakeClock clock;
  CpuEngine e(f.model, {}, clock);
  const auto got = drive(e, clock, {r});
  const auto expect = alone(f.model, r);
  EXPECT_EQ(got.at(1), expect);
  EXPECT_LT(expect.size(), 3u);
  EXPECT_EQ(e.timings().at(1).finish, Finish::Stop);
}

TEST(CpuEngine, BeIsNotStarvedByASteadyLsStream) {
  // LS requests arrive every 5 ms and each LS pass takes about 7 units of
  // 1 ms, so the LS slot is never free. A BE pass is promoted once its batch
  // has waited be_max_wait_s (policy.h), so each of the BE request's 4 passes
  // waits at most about that long; without promotion BE runs only after the
  // LS stream ends.
  const auto& f = tiny("mixtral");
  auto run = [&](double max_wait) {
    EngineLimits lim;
    lim.be_max_wait_s = max_wait;
    FakeClock clock(1e-3);
    CpuEngine e(f.model, lim, clock);
    std::vector<Request> reqs = {req(1000, PriorityClass::BE, {1, 2, 3, 4}, 4, 0.0)};
    for (int i = 0; i < 100; ++i)
      reqs.push_back(req(uint64_t(i + 1), PriorityClass::LS, {9, 8, 7}, 2, 0.005 * i));
    drive(e, clock, reqs);
    double last_ls = 0;
    for (const auto& [id, t] : e.timings())
      if (t.cls == PriorityClass::LS) last_ls = std::max(last_ls, t.finish_s);
    EXPECT_EQ(e.timings().at(1000).finish, Finish::Length);
    return std::make_pair(e.timings().at(1000).finish_s, last_ls);
  };
  const auto [be_promoted, ls_end] = run(0.05);
  EXPECT_LT(be_promoted, 4 * (0.05 + 0.010)) << "BE finished at " << be_promoted << " s";
  EXPECT_LT(be_promoted, ls_end);
  const auto [be_starved, ls_end2] = run(0.0);
  EXPECT_GT(be_starved, ls_end2 - 0.010) << "without promotion BE waits for the LS stream";
}

}  // namespace

// Cancelling a waiting request, and one in the middle of a pass: both end with
// a Cancelled event, their blocks come back once no pass writes them, and the
// other requests get exactly the tokens they get alone.
TEST(CpuEngine, CancelFreesBlocksAndDisturbsNothing) {
  const auto& f = tiny("mixtral");
  EngineLimits lim;
  lim.ls_slots = 1;
  lim.be_slots = 1;
  lim.kv_blocks = 64;
  lim.block_size = 4;
  FakeClock clock;
  CpuEngine e(f.model, lim, clock);
  const auto keep = req(1, PriorityClass::BE, {1, 2, 3, 4, 5}, 6, 0);
  const auto mid = req(2, PriorityClass::BE, {7, 8, 9}, 6, 0);
  const auto queued = req(3, PriorityClass::LS, {3, 3}, 4, 0);
  e.submit(keep);
  e.submit(mid);
  std::vector<TokenEvent> ev;
  ASSERT_TRUE(e.step(ev));  // the BE pass with requests 1 and 2 has started
  ASSERT_TRUE(e.step(ev));
  EXPECT_GT(e.blocks().num_free_blocks(), 0);
  const int free_before = e.blocks().num_free_blocks();
  EXPECT_TRUE(e.cancel(2, ev));
  EXPECT_TRUE(ev.empty()) << "a request in a pass ends with its pass";
  EXPECT_EQ(e.blocks().num_free_blocks(), free_before) << "its pass still writes its blocks";
  EXPECT_FALSE(e.cancel(2, ev)) << "already cancelled";
  e.submit(queued);
  EXPECT_TRUE(e.cancel(3, ev));
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].id, 3u);
  EXPECT_EQ(ev[0].finish, Finish::Cancelled);
  ev.clear();
  std::map<uint64_t, std::vector<int32_t>> got;
  std::map<uint64_t, Finish> fin;
  for (int guard = 0; guard < 100000 && e.step(ev); ++guard) {
    for (const auto& x : ev) {
      if (x.token >= 0) got[x.id].push_back(x.token);
      if (x.finish != Finish::None) fin[x.id] = x.finish;
    }
    ev.clear();
  }
  EXPECT_EQ(got.at(1), alone(f.model, keep));
  EXPECT_EQ(fin.at(1), Finish::Length);
  EXPECT_EQ(fin.at(2), Finish::Cancelled);
  EXPECT_EQ(got.count(2), 0u) << "no token after the cancel";
  EXPECT_FALSE(e.cancel(1, ev)) << "finished";
  EXPECT_FALSE(e.cancel(99, ev)) << "unknown";
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);
  EXPECT_TRUE(e.idle());
  // Finished timings can be released; running ones cannot.
  ASSERT_TRUE(e.release_timing(2).has_value());
  EXPECT_EQ(e.release_timing(2), std::nullopt);
  EXPECT_EQ(e.timings().count(2), 0u);
}

TEST(CpuEngine, CountsPerClass) {
  const auto& f = tiny("olmoe");
  FakeClock clock;
  CpuEngine e(f.model, {}, clock);
  e.submit(req(1, PriorityClass::BE, {1, 2, 3}, 3, 0));
  e.submit(req(2, PriorityClass::BE, {1, 2, 3}, 3, 0));
  e.submit(req(3, PriorityClass::LS, {1, 2}, 3, 0));
  EXPECT_EQ(e.num_waiting(PriorityClass::BE), 2);
  EXPECT_EQ(e.num_waiting(PriorityClass::LS), 1);
  std::vector<TokenEvent> ev;
  ASSERT_TRUE(e.step(ev));  // both slots form passes
  EXPECT_EQ(e.num_running(PriorityClass::LS), 1);
  EXPECT_EQ(e.num_running(PriorityClass::BE), 2);
  EXPECT_EQ(e.num_waiting(PriorityClass::BE) + e.num_waiting(PriorityClass::LS), 0);
}
