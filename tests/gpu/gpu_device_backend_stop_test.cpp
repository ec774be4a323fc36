// The engine over the device dispatcher (device_backend_fixture.h) on a GPU
// where a request, a pass or the loop stops short.
//
//   CancelAndShutdown               a running BE request cancelled mid-pass
//       ends Cancelled with its blocks freed and the loop serves the next
//       request as before; a shutdown mid-workload is acknowledged in < 1 s
//   ADeviceErrorBecomesAMessage     a token id outside the vocabulary written
//       into a staged pass's metadata fails that pass with the error word's
//       message (qllm::Error from Engine::step); the loop keeps running and
//       the failed pass's requests run again
//
// The start-up, the workload and the policies, and what is exact on the
// device and what is not: gpu_device_backend_workload_test.cpp.
#include "device_scheduler/device_loop.h"
#include "engine/common/error.h"
#include "kernels/cuda_check.h"
#include "tests/gpu/device_backend_fixture.h"
#include "tests/gpu_test_util.h"
#include "tests/test_errors.h"

#include <cstdio>
#include <string>
#include <vector>

using namespace qllm;
using namespace qllm::test;
using namespace qllm::test::devbackend;

namespace {

using test::error_or_empty;

// ---------------------------------------------------------------------------

// Runs one request to its end on an idle engine; its tokens (empty on the deadline).
std::vector<int32_t> run_alone(DeviceRig& rig, Driven& d, Request r) {
  r.arrival_s = rig.clock->now();
  rig.engine->submit(r);
  const bool done = step_until(*rig.engine, d, 10.0, [&] { return d.ended(r.id); });
  EXPECT_TRUE(done) << "request " << r.id << " did not end within 10 s";
  return d.tokens.count(r.id) ? d.tokens.at(r.id) : std::vector<int32_t>{};
}

TEST(GpuDeviceEngine, CancelAndShutdown) {
  QLLM_REQUIRE_GPU();
  Weights g(open_tiny("mixtral", 31));
  const int V = g.vocab();
  const EngineLimits lim = limits(sched::Policy::PriorityExpert);
  DeviceRig rig(g.w, lim);
  Engine& e = *rig.engine;
  Driven d;

  // The reference: an LS request alone (its passes, bit for bit, are those of
  // any later run alone: same chunks, other blocks).
  const Request ls = req(10, PriorityClass::LS, 9, 6, 0, true, V);
  const std::vector<int32_t> want = run_alone(rig, d, ls);
  ASSERT_EQ(want.size(), size_t(ls.max_tokens));

  // A BE request with a long prompt (38 prefill passes), cancelled once a
  // unit of layer 0 of one of its passes shows (most of that pass is ahead).
  const uint64_t be_id = 1;
  e.submit(req(be_id, PriorityClass::BE, 600, 20, rig.clock->now(), false, V));
  ASSERT_TRUE(step_until(e, d, 10.0, [&] {
    for (const auto& u : e.unit_log())
      if (u.slot == kBeSlot && u.unit.layer == 0 && u.unit.kind != UnitKind::Head) return true;
    return false;
  })) << "no BE unit within 10 s";
  const size_t passes_at_cancel = rig.rec->passes.size();
  const size_t units_at_cancel = e.unit_log().size();
  std::vector<TokenEvent> ev;
  ASSERT_TRUE(e.cancel(be_id, ev));
  d.take(ev);
  ASSERT_TRUE(step_until(e, d, 10.0, [&] { return d.ended(be_id); })) << "the cancel did not end the request";
  EXPECT_EQ(int(d.finish.at(be_id)), int(Finish::Cancelled));
  EXPECT_EQ(d.tokens.count(be_id), 0u);
  EXPECT_TRUE(e.idle());
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);
  e.blocks().check_invariants();
  // The pass running at the cancel was the BE request's last: it ended
  // Cancelled at a unit boundary, or Done when it finished before the
  // cancellation reached the loop (best effort).
  ASSERT_EQ(rig.rec->passes.size(), passes_at_cancel);
  const RecordedPass& last = rig.rec->passes.back();
  EXPECT_EQ(last.cls, PriorityClass::BE);
  EXPECT_TRUE(last.result.status == PassStatus::Cancelled || last.result.status == PassStatus::Done)
      << int(last.result.status);
  if (last.result.status == PassStatus::Cancelled) {
    const auto& log = e.unit_log();
    for (size_t i = units_at_cancel; i < log.size(); ++i)
      EXPECT_FALSE(log[i].slot == kBeSlot && log[i].unit.kind == UnitKind::Head)
          << "the cancelled pass stopped before its head";
  }
  std::printf("the cancelled BE request's last pass ended %s\n",
              last.result.status == PassStatus::Cancelled ? "Cancelled (stopped mid-pass)" : "Done");

  // The loop serves the next request as before.
  Request ls2 = ls;
  ls2.id = 11;
  EXPECT_EQ(run_alone(rig, d, ls2), want);
  EXPECT_TRUE(e.idle());
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);

  // Shutdown mid-workload: both slots busy with long requests.
  for (uint64_t id = 20; id < 24; ++id)
    e.submit(req(id, id % 2 ? PriorityClass::LS : PriorityClass::BE, 40 + int(id), 30, rig.clock->now(), id % 3 == 0,
                 V));
  const size_t units0 = e.unit_log().size();
  ASSERT_TRUE(step_until(e, d, 10.0, [&] { return e.unit_log().size() >= units0 + 20; })) << "no units within 10 s";
  EXPECT_FALSE(e.idle());
  const auto t0 = Steady::now();
  ASSERT_TRUE(rig.dev->shutdown(5.0));
  const double took = seconds_since(t0);
  EXPECT_LT(took, 1.0);
  EXPECT_FALSE(rig.dev->loop().running());
  const sched::LoopState st = rig.dev->loop().state();
  EXPECT_GE(st.end.shutdown_acked, 1u);
  EXPECT_EQ(st.end.error, 0u);
  EXPECT_TRUE(st.exited);
  std::printf("shutdown mid-workload acknowledged in %.1f ms\n", took * 1e3);
  // The engine is told plainly that the loop is gone.
  ev.clear();
  EXPECT_HAS(error_of([&] { e.step(ev); }), "shut down");
}

// ---------------------------------------------------------------------------

TEST(GpuDeviceEngine, ADeviceErrorBecomesAMessage) {
  QLLM_REQUIRE_GPU();
  Weights g(open_tiny("olmoe", 212));
  const int V = g.vocab();
  const EngineLimits lim = limits(sched::Policy::PriorityExpert);
  DeviceRig rig(g.w, lim);
  Engine& e = *rig.engine;
  Driven d;
  const Request a = req(1, PriorityClass::LS, 5, 4, 0, false, V);
  const std::vector<int32_t> want = run_alone(rig, d, a);
  ASSERT_EQ(want.size(), size_t(a.max_tokens));

  // Every pass is checked on the host before it is staged (a token outside
  // the vocabulary is refused there), so the bad id is written over row 1 of
  // the next LS pass's staged metadata, as a corrupted step would be: the
  // embedding sets the error word and the loop ends the pass at its next unit.
  const int32_t bad = V + 17;
  int corrupted = 0;
  rig.dev->set_stage_hook([&](int slot, void* staged, gpu::GpuHostBackend& h) {
    if (slot != kLsSlot || corrupted > 0) return;
    ++corrupted;
    const auto& sb = h.model().slot(slot);  // the tokens' offset in the metadata block
    const auto offset = reinterpret_cast<const char*>(sb.ptr().tokens) - static_cast<const char*>(sb.metadata());
    int32_t* d_tokens = reinterpret_cast<int32_t*>(static_cast<char*>(staged) + offset);
    QLLM_CUDA_CHECK(cudaMemcpyAsync(d_tokens + 1, &bad, sizeof(bad), cudaMemcpyHostToDevice, h.stream(slot)));
    QLLM_CUDA_CHECK(cudaStreamSynchronize(h.stream(slot)));
  });
  Request a2 = a;
  a2.id = 2;
  a2.arrival_s = rig.clock->now();
  const Request b = req(3, PriorityClass::BE, 21, 6, a2.arrival_s, true, V);
  e.submit(a2);
  e.submit(b);
  std::vector<std::string> errors;
  std::vector<TokenEvent> ev;
  const auto t0 = Steady::now();
  while (!e.idle() && seconds_since(t0) < 20.0) {
    ev.clear();
    const std::string msg = error_or_empty([&] { e.step(ev); });
    if (!msg.empty()) errors.push_back(msg);
    d.take(ev);
  }
  EXPECT_TRUE(e.idle()) << "the requests did not end within 20 s";
  EXPECT_EQ(corrupted, 1);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_HAS(errors[0], "device dispatcher, slot 0");
  EXPECT_HAS(errors[0], "token id outside the vocabulary");
  EXPECT_HAS(errors[0], "error word 1");
  // Exactly one pass failed, the LS one, with the message; the loop still runs.
  int failed = 0;
  for (const auto& p : rig.rec->passes)
    if (p.result.status == PassStatus::Failed) {
      ++failed;
      EXPECT_EQ(p.slot, kLsSlot);
      EXPECT_HAS(p.result.error, "token id outside the vocabulary");
      EXPECT_TRUE(p.result.tokens.empty());
    }
  EXPECT_EQ(failed, 1);
  EXPECT_TRUE(rig.dev->loop().running()) << "one failed pass does not stop the loop";
  // The failed pass's request ran again from where it was: the tokens of its run alone.
  EXPECT_EQ(d.tokens.count(a2.id) ? d.tokens.at(a2.id) : std::vector<int32_t>{}, want);
  EXPECT_EQ(d.tokens.count(b.id) ? d.tokens.at(b.id).size() : 0u, size_t(b.max_tokens));
  EXPECT_EQ(int(d.finish.count(b.id) ? d.finish.at(b.id) : Finish::None), int(Finish::Length));
  EXPECT_EQ(e.blocks().num_free_blocks(), lim.kv_blocks);
  // And the slot that failed takes the next pass cleanly.
  Request a3 = a;
  a3.id = 4;
  EXPECT_EQ(run_alone(rig, d, a3), want);
}

}  // namespace
