// The device loop (device_scheduler/device_loop.h) where a pass or the loop
// stops short, on a GPU over fake unit graphs (device_loop_fixture.cuh), and
// the loop's checks that need no GPU.
//
//   DeviceLoopHost.*   (no GPU) graph-launch error descriptions; a bad
//       configuration refused before the device is touched; supported()
//       agrees with the device report
//   CancellationMidPass   a cancelled pass ends at the next unit boundary,
//       the slot takes the next pass
//   ShutdownMidWorkload   shutdown with both slots busy: acknowledged within
//       about one unit; every pass taken ends exactly once
//   BadDescriptorRaisesAnError, *BadExpertCount, AMissingGraphRaisesGraphLaunch
//       errors that stop the loop, with the slot, layer or unit in the
//       argument
//
// The workload and the policies: gpu_device_loop_workload_test.cu.
#include "tests/gpu/device_loop_fixture.cuh"
#include "tests/gpu_test_util.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace qllm::test::devloop;

namespace {

// ---------------------------------------------------------------------------
// Without a GPU

TEST(DeviceLoopHost, DescribesGraphLaunchErrors) {
  EXPECT_EQ(describe_graph_launch_error(no_graph_arg(1, kLaunchExpert, 2, 3, 4)),
            "slot 1: no graph for expert 3 of layer 2 at bucket 4 (16 rows)");
  EXPECT_EQ(describe_graph_launch_error(no_graph_arg(0, kLaunchAttn, 5, 0, -1)),
            "slot 0: no graph for attn of layer 5: the rows exceed the largest bucket");
  EXPECT_EQ(describe_graph_launch_error(no_graph_arg(3, kLaunchBegin, 0, 0, 1)),
            "slot 3: no begin graph for metadata buffer 1");
  EXPECT_NE(describe_graph_launch_error(kLaunchRelaunch | uint64_t(cudaErrorInvalidValue)).find("tail launch"),
            std::string::npos);
  EXPECT_NE(describe_graph_launch_error(uint64_t(cudaErrorInvalidValue)).find("cudaErrorInvalidValue"),
            std::string::npos);
}

TEST(DeviceLoopHost, RejectsABadConfigurationBeforeTouchingTheDevice) {
  const size_t bytes = control_block_bytes(64);
  std::unique_ptr<void, decltype(&std::free)> mem(std::aligned_alloc(64, bytes), &std::free);
  ControlBlock* cb = control_block_init(mem.get(), bytes, {kSlots, 64, 16});
  static const cudaGraphExec_t fake_execs[1] = {};
  GpuLoopTables t;
  t.main = {{kSlots, kLayers, kExperts, kBuckets}, fake_execs};
  t.begin = fake_execs;
  static int32_t buf[16];
  for (int s = 0; s < kSlots; ++s) t.slot[s] = {buf, buf, buf, nullptr};
  for (int l = 0; l < kLayers; ++l) {
    t.units[l] = kUnits[l];
    t.fanout[l] = kFanout[l];
  }
  LoopConfig cfg;
  cfg.layers = kLayers;
  auto message = [&](const LoopConfig& c, const GpuLoopTables& tt) -> std::string {
    try {
      DeviceLoop loop(cb, c, tt, nullptr);
    } catch (const std::runtime_error& e) {  // qllm::Error
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message(cfg, t).find("stream"), std::string::npos) << message(cfg, t);  // the rest was fine
  LoopConfig c = cfg;
  c.layers = kMaxLayers + 1;
  EXPECT_NE(message(c, t).find("layers"), std::string::npos) << message(c, t);
  GpuLoopTables u = t;
  u.units[1] = 0;
  EXPECT_NE(message(cfg, u).find("layer 1 has 0 expert units"), std::string::npos) << message(cfg, u);
  u = t;
  u.units[0] = kExperts + 1;
  EXPECT_NE(message(cfg, u).find("expert units"), std::string::npos) << message(cfg, u);
  u = t;
  u.fanout[0] = kExperts + 1;
  EXPECT_NE(message(cfg, u).find("sends each row"), std::string::npos) << message(cfg, u);
  u = t;
  u.slot[1].error = nullptr;
  EXPECT_NE(message(cfg, u).find("slot 1"), std::string::npos) << message(cfg, u);
  u = t;
  u.main.shape.layers = 3;
  EXPECT_NE(message(cfg, u).find("3 layers"), std::string::npos) << message(cfg, u);
  u = t;
  u.begin = nullptr;
  EXPECT_NE(message(cfg, u).find("begin"), std::string::npos) << message(cfg, u);
  cb->header.magic = 0;
  EXPECT_NE(message(cfg, t).find("control block"), std::string::npos) << message(cfg, t);
}

TEST(DeviceLoopHost, SupportedFollowsTheDeviceReport) {
  const auto report = qllm::cuda::query_devices();
  std::string why;
  const bool ok = DeviceLoop::supported(0, &why);
  EXPECT_EQ(ok, !report.devices.empty() && report.devices.front().device_graph_launch);
  if (!ok) EXPECT_FALSE(why.empty());
}

// ---------------------------------------------------------------------------
// On a GPU

// A cancellation that arrives mid-pass ends the pass at the next unit
// boundary: PassDone with kRecordCancelled, no tokens; the slot takes the next
// pass.
TEST(GpuDeviceLoop, CancellationMidPass) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  Rig r(Policy::PriorityExpert);
  r.set_unit_ns(2'000'000);
  r.loop->start();
  const uint64_t a = long_pass(200, 7);
  const BatchDesc d_a = make_desc(a, 8, 2, 2, PriorityClass::BE);
  ASSERT_TRUE(r.publish(0, d_a));
  ASSERT_TRUE(r.pump_until([&] { return r.timings[a] >= 1; }, 5.0)) << format_device_error(host_check_error(*r.cb));
  ASSERT_TRUE(host_request_cancel(r.h, 999999));  // names no pass: no effect
  ASSERT_TRUE(host_request_cancel(r.h, a));
  ASSERT_TRUE(r.wait_done(a, 5.0)) << format_device_error(host_check_error(*r.cb));
  r.set_unit_ns(0);
  const BatchDesc d_b = make_desc(a + 1, 4, 2, 2, PriorityClass::LS);
  ASSERT_TRUE(r.publish(0, d_b));
  ASSERT_TRUE(r.wait_done(d_b.pass_id, 5.0)) << format_device_error(host_check_error(*r.cb));
  ASSERT_TRUE(r.shutdown());
  EXPECT_FALSE(host_check_error(*r.cb));

  check_pass_records(r, d_a, 0, kRecordCancelled);
  const int units_a = r.timings[a];
  EXPECT_GE(units_a, 1);
  EXPECT_LT(size_t(units_a), expect_pass(d_a, 0).units.size()) << "the cancelled pass ran to its end";
  check_pass_records(r, d_b, 0, 0);
  const auto log = r.log();
  check_pass_log(log, d_a, 0, size_t(units_a) + 1);  // begin and the units that ran, nothing after
  check_pass_log(log, d_b, 0);
}

// Shutdown while both slots are busy and more batches wait: the loop
// acknowledges within about one unit, every pass it took has exactly one
// PassDone (completed, or kRecordShutdown), and the batches it never took
// have no records.
TEST(GpuDeviceLoop, ShutdownMidWorkload) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  Rig r(Policy::PriorityExpert);
  r.set_unit_ns(500'000);  // 0.5 ms per unit
  r.loop->start();
  std::vector<BatchDesc> published[kSlots];
  uint64_t next = 1;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(40);
  while (std::chrono::steady_clock::now() < until) {
    for (int s = 0; s < kSlots; ++s) {
      BatchDesc d = workload_desc(next);
      if (d.pass_id == kBadDataPass) d.pass_id = 1000000 + next;
      if (host_publish_batch(r.h, s, d)) {
        published[s].push_back(d);
        ++next;
      }
    }
    r.drain();
    ASSERT_FALSE(host_check_error(*r.cb)) << format_device_error(host_check_error(*r.cb));
    std::this_thread::yield();
  }
  const auto t0 = std::chrono::steady_clock::now();
  host_request_shutdown(r.h);
  const bool acked =
      r.pump_until([&] { return host_shutdown_acked(r.h) || bool(host_check_error(*r.cb)); }, 5.0);
  const double latency = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.drain();
  ASSERT_TRUE(acked && host_shutdown_acked(r.h)) << format_device_error(host_check_error(*r.cb));
  std::printf("shutdown acknowledged after %.3f ms\n", latency * 1e3);
  EXPECT_LT(latency, 0.25) << "the loop should stop within about one unit (0.5 ms)";
  EXPECT_TRUE(r.loop->wait(5.0));
  EXPECT_FALSE(host_check_error(*r.cb));

  int abandoned = 0, completed = 0;
  for (int s = 0; s < kSlots; ++s) {
    const uint32_t untaken = host_unconsumed(r.h, s);
    ASSERT_LE(untaken, published[s].size());
    const size_t taken = published[s].size() - untaken;
    for (size_t i = 0; i < published[s].size(); ++i) {
      const BatchDesc& d = published[s][i];
      if (i >= taken) {
        EXPECT_TRUE(r.of(d.pass_id, RecordKind::PassDone).empty()) << "pass " << d.pass_id << " was never taken";
        continue;
      }
      const auto done = r.of(d.pass_id, RecordKind::PassDone);
      ASSERT_EQ(done.size(), 1u) << "pass " << d.pass_id;
      if (done[0].flags == kRecordShutdown) {
        ++abandoned;
        EXPECT_TRUE(r.of(d.pass_id, RecordKind::Token).empty());
      } else {
        ++completed;
        check_pass_records(r, d, s, 0);
      }
    }
  }
  EXPECT_GE(abandoned, 1) << "a pass should have been running at the shutdown";
  EXPECT_GE(completed, 1);
  const LoopState st = r.loop->state();
  EXPECT_TRUE(st.exited);
}

// An invalid descriptor stops the loop with BadDescriptor (slot and sequence
// in the argument) and stays unconsumed for the host to inspect.
TEST(GpuDeviceLoop, BadDescriptorRaisesAnError) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  Rig r(Policy::PriorityExpert);
  r.loop->start();
  const BatchDesc ok = make_desc(5, 4, 2, 1, PriorityClass::LS);
  ASSERT_TRUE(r.publish(0, ok));
  ASSERT_TRUE(r.wait_done(ok.pass_id, 5.0)) << format_device_error(host_check_error(*r.cb));
  BatchDesc bad = make_desc(6, 4, 2, 1, PriorityClass::BE);
  bad.n_rows = 0;
  ASSERT_TRUE(r.publish(1, bad));
  ASSERT_TRUE(r.pump_until([&] { return bool(host_check_error(*r.cb)); }, 5.0));
  const DeviceError e = host_check_error(*r.cb);
  EXPECT_EQ(e.code, ErrorCode::BadDescriptor);
  EXPECT_EQ(e.arg, (uint64_t(1) << 32) | 1u);
  EXPECT_NE(format_device_error(e).find("invalid batch descriptor"), std::string::npos) << format_device_error(e);
  EXPECT_TRUE(r.loop->wait(5.0));
  EXPECT_EQ(host_unconsumed(r.h, 1), 1u);
  check_pass_records(r, ok, 0, 0);
  EXPECT_TRUE(r.loop->state().exited);
}

// Expert counts the router could not have written stop the loop with
// BadExpertCount, (slot << 32) | layer in the argument: a count above the
// pass's rows (dense layer 1), and more rows in all than rows * top_k (MoE
// layer 0). The loop reads only the layer's units (layer 1 writes junk past
// counts[0] in every pass).
void bad_counts(uint64_t pass, int slot, int layer) {
  Rig r(Policy::PriorityExpert);
  r.loop->start();
  ASSERT_TRUE(r.publish(slot, make_desc(pass, 4, 2, 1, PriorityClass::BE)));
  ASSERT_TRUE(r.pump_until([&] { return bool(host_check_error(*r.cb)); }, 5.0));
  const DeviceError e = host_check_error(*r.cb);
  EXPECT_EQ(e.code, ErrorCode::BadExpertCount) << format_device_error(e);
  EXPECT_EQ(e.arg, (uint64_t(slot) << 32) | uint32_t(layer));
  EXPECT_NE(format_device_error(e).find("expert count"), std::string::npos) << format_device_error(e);
  EXPECT_TRUE(r.loop->wait(5.0));
  EXPECT_TRUE(r.loop->state().exited);
}

TEST(GpuDeviceLoop, ACountAboveTheRowsRaisesBadExpertCount) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  bad_counts(kBadCountPass, 1, 1);
}

TEST(GpuDeviceLoop, TooManyExpertRowsRaiseBadExpertCount) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  bad_counts(kBadSumPass, 0, 0);
}

// A pass whose rows exceed the largest captured bucket has no attn graph:
// GraphLaunch, with the unit in the argument.
TEST(GpuDeviceLoop, AMissingGraphRaisesGraphLaunch) {
  QLLM_REQUIRE_GPU();
  REQUIRE_DEVICE_LAUNCH();
  Rig r(Policy::PriorityExpert);
  r.loop->start();
  ASSERT_TRUE(r.publish(0, make_desc(7, 100, 2, 1, PriorityClass::BE)));
  ASSERT_TRUE(r.pump_until([&] { return bool(host_check_error(*r.cb)); }, 5.0));
  const DeviceError e = host_check_error(*r.cb);
  EXPECT_EQ(e.code, ErrorCode::GraphLaunch) << format_device_error(e);
  EXPECT_EQ(e.arg, no_graph_arg(0, kLaunchAttn, 0, 0, -1)) << describe_graph_launch_error(e.arg);
  EXPECT_NE(describe_graph_launch_error(e.arg).find("exceed the largest bucket"), std::string::npos);
  EXPECT_TRUE(r.loop->wait(5.0));
}

}  // namespace
