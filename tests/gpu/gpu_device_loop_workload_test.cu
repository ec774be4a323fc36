// The device loop (device_scheduler/device_loop.h) on a GPU over fake unit
// graphs (device_loop_fixture.cuh): a long workload, and the policies.
//
//   WorkloadTokensAndUnitOrder   hundreds of passes on both slots: every
//       token and every unit in order; a pass whose kernel sets the error
//       word ends with kRecordBadData and its slot goes on
//   PriorityExpertLsOvertakesARunningBePass, FcfsIterationLetsTheRunningPassFinish
//       an LS batch published while a BE pass runs starts before the BE
//       pass's next unit under priority-expert, after its end under
//       fcfs-iteration
//
// Cancellation, shutdown and errors: gpu_device_loop_stop_test.cu.
#include "tests/gpu/device_loop_fixture.cuh"
#include "tests/gpu_test_util.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

using namespace qllm::test::devloop;

namespace {

// Hundreds of passes on both slots: every token in order, every pass's units
// in the policy's order (UnitTiming records and the device log agree), the
// decode attention graphs for decode-only passes, a pass whose kernel sets
// the error word ends with kRecordBadData and the slot goes on.
TEST(GpuDeviceLoop, WorkloadTokensAndUnitOrder) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  Rig r(Policy::PriorityExpert);
  r.loop->start();
  constexpr uint64_t kPerSlot = 300;
  std::vector<BatchDesc> descs[kSlots];
  for (uint64_t k = 0; k < kPerSlot; ++k)
    for (int s = 0; s < kSlots; ++s) {
      const BatchDesc d = workload_desc(1 + k * kSlots + uint64_t(s));
      ASSERT_TRUE(r.publish(s, d)) << "publish of pass " << d.pass_id << ": "
                                   << format_device_error(host_check_error(*r.cb));
      descs[s].push_back(d);
    }
  EXPECT_TRUE(r.loop->running()) << "the host's stream should hold the loop until it exits";
  ASSERT_TRUE(r.pump_until([&] { return r.n_done == kSlots * kPerSlot; }, 30.0))
      << r.n_done << " passes done; " << format_device_error(host_check_error(*r.cb));
  ASSERT_TRUE(r.shutdown());
  const DeviceError err = host_check_error(*r.cb);
  EXPECT_FALSE(err) << format_device_error(err);
  EXPECT_EQ(host_dropped_timings(*r.cb), 0u);

  const std::vector<LogEntry> log = r.log();
  size_t launches = 0, logged = 0;
  for (int s = 0; s < kSlots; ++s) {
    // the slot's passes end in publish order
    std::vector<uint64_t> order;
    for (const auto& rec : r.records)
      if (rec.kind == RecordKind::PassDone && rec.slot == s) order.push_back(rec.pass_id);
    ASSERT_EQ(order.size(), descs[s].size());
    for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], descs[s][i].pass_id);
    for (const BatchDesc& d : descs[s]) {
      check_pass_records(r, d, s, d.pass_id == kBadDataPass ? kRecordBadData : 0);
      check_pass_log(log, d, s);
      const Expected x = expect_pass(d, s);
      launches += x.launches;
      logged += x.log.size();
    }
  }
  EXPECT_EQ(log.size(), logged);
  const LoopState st = r.loop->state();
  EXPECT_TRUE(st.exited);
  EXPECT_EQ(st.units_launched, launches);
  EXPECT_EQ(st.running_slot, -1);
}

// An LS batch published while a BE pass runs: under priority-expert it starts
// before the BE pass's next unit and runs to its end before the BE pass
// continues; under fcfs-iteration the BE pass finishes first.
void overtake(Policy policy) {
  Rig r(policy);
  r.set_unit_ns(2'000'000);  // 2 ms per unit
  r.loop->start();
  const uint64_t be = long_pass(100, 7);
  const BatchDesc d_be = make_desc(be, 8, 1, 1, PriorityClass::BE);
  const BatchDesc d_ls = make_desc(be + 100000, 2, 1, 1, PriorityClass::LS);
  ASSERT_TRUE(r.publish(0, d_be));
  ASSERT_TRUE(r.pump_until([&] { return r.timings[be] >= 1; }, 5.0)) << format_device_error(host_check_error(*r.cb));
  const int seen = r.timings[be];
  ASSERT_TRUE(r.publish(1, d_ls));
  ASSERT_TRUE(r.wait_done(d_ls.pass_id) && r.wait_done(be)) << format_device_error(host_check_error(*r.cb));
  ASSERT_TRUE(r.shutdown());
  EXPECT_FALSE(host_check_error(*r.cb));
  check_pass_records(r, d_be, 0, 0);
  check_pass_records(r, d_ls, 1, 0);

  int be_before = 0, be_during = 0, be_total = 0;
  bool ls_started = false, ls_done = false;
  for (const auto& rec : r.records) {
    if (rec.pass_id == d_ls.pass_id && rec.kind == RecordKind::UnitTiming) ls_started = true;
    if (rec.pass_id == d_ls.pass_id && rec.kind == RecordKind::PassDone) ls_done = true;
    if (rec.pass_id != be || rec.kind != RecordKind::UnitTiming) continue;
    ++be_total;
    if (!ls_started) ++be_before;
    else if (!ls_done) ++be_during;
  }
  const int be_units = int(expect_pass(d_be, 0).units.size());
  EXPECT_EQ(be_total, be_units);
  if (policy == Policy::PriorityExpert) {
    // the unit running when the host published (its timing not seen yet) may finish first
    EXPECT_LE(be_before, seen + 1) << "BE units before the LS pass started";
    EXPECT_EQ(be_during, 0) << "BE units while the LS pass ran";
    EXPECT_LT(be_before, be_units) << "the BE pass should still have had units left";
  } else {
    EXPECT_EQ(be_before, be_units) << "fcfs-iteration runs the started BE pass to its end first";
  }
}

TEST(GpuDeviceLoop, PriorityExpertLsOvertakesARunningBePass) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  overtake(Policy::PriorityExpert);
}

TEST(GpuDeviceLoop, FcfsIterationLetsTheRunningPassFinish) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  overtake(Policy::FcfsIteration);
}

}  // namespace
