// The control-block protocol on the CPU: host threads play both sides (a
// "device" thread runs the consumer loop on ordinary aligned host memory),
// through the same accessor functions the device loop calls. Thread
// interleavings vary from run to run; every assertion is an invariant that
// holds for all of them. Run many times and under ThreadSanitizer.

#include "tests/control_block_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace qllm::sched;
using namespace qllm::sched::test;

namespace {

TEST(SchedulerControlBlock, InitWritesHeaderAndRejectsBadConfigs) {
  ControlBlockConfig cfg;
  cfg.n_slots = 3;
  cfg.out_capacity = 10;
  cfg.out_timing_reserve = 4;
  Block b(cfg);
  EXPECT_EQ(b.cb->header.magic, kControlBlockMagic);
  EXPECT_EQ(b.cb->header.version, kControlBlockVersion);
  EXPECT_EQ(b.cb->header.layout_bytes, sizeof(ControlBlock));
  EXPECT_EQ(b.cb->header.n_slots, 3u);
  EXPECT_EQ(b.cb->header.out_timing_limit, 6u);
  EXPECT_EQ(b.cb->slot[2].host.publish_seq, 0u);
  EXPECT_EQ(b.cb->life.dev.error_code, 0u);
  EXPECT_EQ(output_records(b.cb)[9].kind, RecordKind::Invalid);
  EXPECT_EQ(reinterpret_cast<char*>(output_records(b.cb)) - reinterpret_cast<char*>(b.cb),
            ptrdiff_t(sizeof(ControlBlock)));

  alignas(64) static unsigned char mem[8192];
  ControlBlockConfig bad = cfg;
  bad.n_slots = 0;
  EXPECT_THROW(control_block_init(mem, sizeof mem, bad), std::invalid_argument);
  bad = cfg;
  bad.n_slots = kMaxSlots + 1;
  EXPECT_THROW(control_block_init(mem, sizeof mem, bad), std::invalid_argument);
  bad = cfg;
  bad.out_timing_reserve = bad.out_capacity;
  EXPECT_THROW(control_block_init(mem, sizeof mem, bad), std::invalid_argument);
  EXPECT_THROW(control_block_init(mem + 8, sizeof mem - 8, cfg), std::invalid_argument);
  EXPECT_THROW(control_block_init(mem, sizeof(ControlBlock), cfg), std::invalid_argument);
}

TEST(SchedulerControlBlock, DoubleBufferHoldsTwoBatchesAndWaitsForConsume) {
  Block b;
  HostEnd h = make_host_end(b.cb);
  DeviceEnd d = make_device_end(b.cb, *b.cb);
  BatchDesc got{};
  EXPECT_FALSE(device_poll_batch(d, 0, &got));
  ASSERT_TRUE(host_publish_batch(h, 0, make_desc(10)));
  ASSERT_TRUE(host_publish_batch(h, 0, make_desc(11)));  // the next batch, prepared ahead
  EXPECT_FALSE(host_publish_batch(h, 0, make_desc(12)));  // both buffers unconsumed
  EXPECT_EQ(host_unconsumed(h, 0), 2u);
  EXPECT_EQ(b.cb->slot[0].host.desc[1].pass_id, 10u);  // sequence 1 in desc[1]
  EXPECT_EQ(b.cb->slot[0].host.desc[0].pass_id, 11u);
  ASSERT_TRUE(device_poll_batch(d, 0, &got));
  EXPECT_TRUE(desc_matches(got));
  EXPECT_EQ(got.pass_id, 10u);
  EXPECT_EQ(device_slot_seq(d, 0), 1u);
  ASSERT_TRUE(host_publish_batch(h, 0, make_desc(12)));  // reuses desc[1]
  ASSERT_TRUE(device_poll_batch(d, 0, &got));
  EXPECT_EQ(got.pass_id, 11u);
  ASSERT_TRUE(device_poll_batch(d, 0, &got));
  EXPECT_EQ(got.pass_id, 12u);
  EXPECT_FALSE(device_poll_batch(d, 0, &got));  // each batch once
  EXPECT_EQ(host_unconsumed(h, 0), 0u);
  EXPECT_FALSE(device_poll_batch(d, 1, &got));  // other slots untouched
}

// Thousands of batches into double buffers while the device thread takes them:
// none lost, none seen twice, none torn, and the host never overwrites a
// buffer the device has not consumed.
TEST(SchedulerControlBlock, BatchesArriveOnceInOrderUntorn) {
  constexpr int kSlots = 4;
  constexpr uint64_t kPerSlot = 3000;
  ControlBlockConfig cfg;
  cfg.n_slots = kSlots;
  Block b(cfg);
  Failures f;
  uint64_t host_full = 0;

  std::thread device([&] {
    DeviceEnd d = make_device_end(b.cb, *b.cb);
    Jitter j(7);
    uint64_t seen[kSlots] = {};
    uint64_t total = 0;
    const auto end = Clock::now() + std::chrono::seconds(30);
    while (total < kSlots * kPerSlot && !f.stop.load()) {
      if (Clock::now() > end) return f.fail("device: timed out");
      for (int s = 0; s < kSlots; ++s) {
        BatchDesc got;
        if (!device_poll_batch(d, s, &got)) continue;
        const uint64_t want = 1 + seen[s] * kSlots + uint64_t(s);
        if (got.pass_id != want)
          return f.fail("slot " + std::to_string(s) + ": got pass " + std::to_string(got.pass_id) +
                        ", expected " + std::to_string(want));
        if (!desc_matches(got)) return f.fail("torn descriptor for pass " + std::to_string(want));
        ++seen[s];
        ++total;
        j.maybe_pause(8);  // the pass "runs"
      }
    }
  });
  std::thread host([&] {
    HostEnd h = make_host_end(b.cb);
    Jitter j(11);
    for (uint64_t k = 0; k < kPerSlot; ++k) {
      for (int s = 0; s < kSlots; ++s) {
        const uint64_t pass = 1 + k * kSlots + uint64_t(s);
        const BatchDesc desc = make_desc(pass);
        bool ok = host_publish_batch(h, s, desc);
        if (!ok) {
          ++host_full;
          ok = wait_until([&] { return host_publish_batch(h, s, desc); }, f);
        }
        if (!ok) return f.fail("host: could not publish pass " + std::to_string(pass));
        // The buffer just written last held sequence seq - 2: it was consumed.
        const uint64_t seq = h.published[s];
        const uint64_t consumed = qllm::sync::load_acquire_sys(&b.cb->slot[s].dev.consume_seq);
        if (consumed + 2 < seq) return f.fail("host overwrote an unconsumed buffer");
        j.maybe_pause(16);
      }
    }
  });
  host.join();
  device.join();
  EXPECT_EQ(f.first, "");
  for (int s = 0; s < kSlots; ++s) {
    EXPECT_EQ(b.cb->slot[s].host.publish_seq, kPerSlot);
    EXPECT_EQ(b.cb->slot[s].dev.consume_seq, kPerSlot);
  }
  RecordProperty("host_found_both_buffers_full", std::to_string(host_full));
}

TEST(SchedulerControlBlock, CancellationsAllArriveInOrder) {
  constexpr uint64_t kCancels = 20000;
  Block b;
  Failures f;
  std::thread device([&] {
    DeviceEnd d = make_device_end(b.cb, *b.cb);
    Jitter j(3);
    uint64_t next = 1;
    auto check = [&](uint64_t id) {
      if (id != next) f.fail("cancel " + std::to_string(id) + " arrived, expected " + std::to_string(next));
      ++next;
    };
    while (next <= kCancels && wait_until([&] { return device_poll_cancels(d, check) > 0; }, f))
      j.maybe_pause(4);
    if (next <= kCancels) f.fail("device: cancellations stopped at " + std::to_string(next));
  });
  HostEnd h = make_host_end(b.cb);
  Jitter j(5);
  for (uint64_t id = 1; id <= kCancels; ++id) {
    if (!host_request_cancel(h, id) && !wait_until([&] { return host_request_cancel(h, id); }, f)) {
      f.fail("host: cancel ring stuck at " + std::to_string(id));
      break;
    }
    j.maybe_pause(32);
  }
  device.join();
  EXPECT_EQ(f.first, "");
  EXPECT_EQ(b.cb->cancel.dev.tail, kCancels);
}

OutputRecord timing(uint64_t i) {
  OutputRecord r{};
  r.kind = RecordKind::UnitTiming;
  r.pass_id = i;
  r.t_start_ns = 2 * i;
  r.t_end_ns = 2 * i + 1;
  return r;
}
OutputRecord token(uint64_t i) {
  OutputRecord r{};
  r.kind = RecordKind::Token;
  r.pass_id = i;
  r.token = token_of(i, 0);
  return r;
}

// The overflow rules, step by step: timings stop at the timing limit and are
// counted as dropped; tokens fill the ring and then get Full, never a drop.
TEST(SchedulerControlBlock, OutputRingOverflowRules) {
  ControlBlockConfig cfg;
  cfg.out_capacity = 8;
  cfg.out_timing_reserve = 3;  // timings may fill 5 of 8
  Block b(cfg);
  DeviceEnd d = make_device_end(b.cb, *b.cb);
  DrainEnd r = make_drain_end(b.cb);
  for (uint64_t i = 1; i <= 5; ++i) EXPECT_EQ(device_push_output(d, timing(i)), PushResult::Pushed);
  EXPECT_EQ(device_push_output(d, timing(6)), PushResult::Dropped);
  for (uint64_t i = 1; i <= 3; ++i) EXPECT_EQ(device_push_output(d, token(i)), PushResult::Pushed);
  EXPECT_EQ(device_output_free(d), 0u);
  EXPECT_EQ(device_push_output(d, token(4)), PushResult::Full);
  EXPECT_EQ(host_dropped_timings(*b.cb), 1u);

  std::vector<OutputRecord> got;
  auto keep = [&](const OutputRecord& rec) { got.push_back(rec); };
  EXPECT_EQ(host_drain_output(r, keep, 2), 2u);
  EXPECT_EQ(device_output_free(d), 2u);
  EXPECT_EQ(device_push_output(d, token(4)), PushResult::Pushed);  // the retried token
  EXPECT_EQ(device_push_output(d, timing(7)), PushResult::Dropped);  // 7 in the ring >= 5
  EXPECT_EQ(host_drain_output(r, keep), 7u);
  EXPECT_EQ(host_drain_output(r, keep), 0u);
  ASSERT_EQ(got.size(), 9u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(got[i].kind, RecordKind::UnitTiming);
    EXPECT_EQ(got[i].pass_id, i + 1);
    EXPECT_EQ(got[i].t_end_ns, 2 * (i + 1) + 1);
  }
  for (size_t i = 5; i < 9; ++i) {
    EXPECT_EQ(got[i].kind, RecordKind::Token);
    EXPECT_EQ(got[i].pass_id, i - 4);
    EXPECT_EQ(got[i].token, token_of(i - 4, 0));
  }
  EXPECT_EQ(host_dropped_timings(*b.cb), 2u);
  EXPECT_EQ(device_push_output(d, timing(8)), PushResult::Pushed);  // room again
}

// A small ring and a slow drain: every token arrives, in order; timings that
// arrive are in order, and arrived + dropped = pushed once the device acked
// the shutdown (which orders its last records before the acknowledgement).
TEST(SchedulerControlBlock, OutputRingSlowConsumerLosesNoToken) {
  constexpr uint64_t kTokens = 20000;
  constexpr uint64_t kTimingsPerToken = 2;
  ControlBlockConfig cfg;
  cfg.out_capacity = 16;
  cfg.out_timing_reserve = 4;
  Block b(cfg);
  Failures f;
  std::thread device([&] {
    DeviceEnd d = make_device_end(b.cb, *b.cb);
    Jitter j(17);
    uint64_t t = 0;
    for (uint64_t i = 1; i <= kTokens && !f.stop.load(); ++i) {
      for (uint64_t k = 0; k < kTimingsPerToken; ++k) {
        const PushResult res = device_push_output(d, timing(++t));
        if (res == PushResult::Full) return f.fail("a timing got Full instead of Dropped");
      }
      const OutputRecord rec = token(i);
      PushResult res = device_push_output(d, rec);
      if (res == PushResult::Dropped) return f.fail("a token was dropped");
      if (res == PushResult::Full &&  // keep it, retry on a later "cycle"
          !wait_until([&] { return device_push_output(d, rec) == PushResult::Pushed; }, f))
        return f.fail("device: token " + std::to_string(i) + " never fit");
      j.maybe_pause(16);
    }
    if (!wait_until([&] { return device_shutdown_requested(d); }, f)) return f.fail("no shutdown request");
    device_ack_shutdown(d);
  });
  uint64_t next_token = 1, last_timing = 0, timings = 0;
  auto check = [&](const OutputRecord& rec) {
    if (rec.kind == RecordKind::Token) {
      if (rec.pass_id != next_token || rec.token != token_of(rec.pass_id, 0))
        f.fail("token " + std::to_string(rec.pass_id) + " arrived, expected " + std::to_string(next_token));
      ++next_token;
    } else if (rec.kind == RecordKind::UnitTiming) {
      if (rec.pass_id <= last_timing || rec.t_start_ns != 2 * rec.pass_id)
        f.fail("timing out of order or torn");
      last_timing = rec.pass_id;
      ++timings;
    } else {
      f.fail("record of kind " + std::to_string(int(rec.kind)));
    }
  };
  HostEnd h = make_host_end(b.cb);
  DrainEnd r = make_drain_end(b.cb);
  Jitter j(19);
  host_request_shutdown(h);  // acknowledged only after the device's last push
  const auto end = Clock::now() + std::chrono::seconds(30);
  while (!host_shutdown_acked(h) && !f.stop.load() && Clock::now() < end) {
    host_drain_output(r, check, 1 + j.rng() % 8);
    j.maybe_pause(2);  // the slow consumer
  }
  host_drain_output(r, check);  // after the ack: everything the device pushed
  device.join();
  EXPECT_EQ(f.first, "");
  EXPECT_TRUE(host_shutdown_acked(h));
  EXPECT_EQ(next_token, kTokens + 1);
  EXPECT_EQ(timings + host_dropped_timings(*b.cb), kTokens * kTimingsPerToken);
  RecordProperty("timings_dropped", std::to_string(host_dropped_timings(*b.cb)));
}

TEST(SchedulerControlBlock, FirstDeviceErrorWinsWithMessage) {
  Block b;
  DeviceEnd d = make_device_end(b.cb, *b.cb);
  EXPECT_FALSE(host_check_error(*b.cb));
  EXPECT_STREQ(host_check_error(*b.cb).message, "no error");
  EXPECT_TRUE(device_raise_error(d, ErrorCode::BadExpertCount, 9));
  EXPECT_FALSE(device_raise_error(d, ErrorCode::Internal, 1));
  const DeviceError e = host_check_error(*b.cb);
  EXPECT_TRUE(e);
  EXPECT_EQ(e.code, ErrorCode::BadExpertCount);
  EXPECT_EQ(e.arg, 9u);
  EXPECT_NE(std::string(e.message).find("expert count"), std::string::npos);
  EXPECT_EQ(format_device_error(e).rfind("device error 4: a router unit", 0), 0u) << format_device_error(e);
  for (uint32_t c = 0; c <= 6; ++c) EXPECT_NE(error_message(ErrorCode(c)), nullptr);
}

// The host polls the error word while the device works and raises two errors:
// it sees no error, then the first one with its argument, never a mix.
TEST(SchedulerControlBlock, ErrorSeenConcurrentlyIsTheFirstWithItsArgument) {
  Block b;
  Failures f;
  std::thread device([&] {
    DeviceEnd d = make_device_end(b.cb, *b.cb);
    for (int i = 0; i < 2000; ++i) std::this_thread::yield();
    device_raise_error(d, ErrorCode::GraphLaunch, 0xC0FFEEull);
    device_raise_error(d, ErrorCode::Internal, 77);
  });
  DeviceError e;
  wait_until([&] { return bool(e = host_check_error(*b.cb)); }, f);
  device.join();
  EXPECT_EQ(e.code, ErrorCode::GraphLaunch);
  EXPECT_EQ(e.arg, 0xC0FFEEull);
  EXPECT_EQ(host_check_error(*b.cb).code, ErrorCode::GraphLaunch);
}

TEST(SchedulerControlBlock, BadDescriptorAndBadHeaderRaiseErrors) {
  {
    Block b;
    HostEnd h = make_host_end(b.cb);
    DeviceEnd d = make_device_end(b.cb, *b.cb);
    BatchDesc bad = make_desc(5);
    bad.n_seqs = uint16_t(bad.n_rows + 1);
    ASSERT_TRUE(host_publish_batch(h, 1, bad));
    BatchDesc got;
    EXPECT_FALSE(device_poll_batch(d, 1, &got));
    EXPECT_EQ(b.cb->slot[1].dev.consume_seq, 0u);  // left for the host to inspect
    const DeviceError e = host_check_error(*b.cb);
    EXPECT_EQ(e.code, ErrorCode::BadDescriptor);
    EXPECT_EQ(e.arg, (1ull << 32) | 1u);
    EXPECT_NE(std::string(e.message).find("descriptor"), std::string::npos);
  }
  {
    Block b;
    DeviceEnd d = make_device_end(b.cb, *b.cb);
    EXPECT_TRUE(device_check_header(d));
    b.cb->header.version = kControlBlockVersion + 1;
    EXPECT_FALSE(device_check_header(d));
    EXPECT_EQ(host_check_error(*b.cb).code, ErrorCode::BadControlBlock);
    EXPECT_EQ(host_check_error(*b.cb).arg, kControlBlockVersion + 1);
  }
}

TEST(SchedulerControlBlock, PromotionAndLsPendingFlags) {
  Block b;
  HostEnd h = make_host_end(b.cb);
  DeviceEnd d = make_device_end(b.cb, *b.cb);
  EXPECT_FALSE(device_ls_pending(d));
  host_set_ls_pending(h, true);
  EXPECT_TRUE(device_ls_pending(d));
  host_set_ls_pending(h, false);
  EXPECT_FALSE(device_ls_pending(d));

  BatchDesc got;
  EXPECT_FALSE(device_promoted(d, 0));  // no pass
  ASSERT_TRUE(host_publish_batch(h, 0, make_desc(1)));
  ASSERT_TRUE(host_publish_batch(h, 0, make_desc(2)));
  ASSERT_TRUE(device_poll_batch(d, 0, &got));
  EXPECT_FALSE(device_promoted(d, 0));
  host_promote(h, 0, 2);  // the queued pass, and so every earlier one
  EXPECT_TRUE(device_promoted(d, 0));
  host_promote(h, 0, 1);  // never goes back
  EXPECT_EQ(b.cb->slot[0].host.promote_seq, 2u);
  ASSERT_TRUE(device_poll_batch(d, 0, &got));
  EXPECT_TRUE(device_promoted(d, 0));
  ASSERT_TRUE(host_publish_batch(h, 0, make_desc(3)));
  ASSERT_TRUE(device_poll_batch(d, 0, &got));
  EXPECT_FALSE(device_promoted(d, 0));
  EXPECT_FALSE(device_promoted(d, 1));
}

// Every host call that gives the device news rings the doorbell after its
// own flag, so one read of the doorbell tells the loop whether to read the
// rest; the LS-pending hint is not news (it does not ring).
TEST(SchedulerControlBlock, TheDoorbellRingsForEveryNews) {
  Block b;
  HostEnd h = make_host_end(b.cb);
  DeviceEnd d = make_device_end(b.cb, *b.cb);
  EXPECT_EQ(device_read_doorbell(d), 0u);
  host_set_ls_pending(h, true);
  EXPECT_EQ(device_read_doorbell(d), 0u);
  ASSERT_TRUE(host_publish_batch(h, 1, make_desc(7)));
  const uint64_t bell = device_read_doorbell(d);
  EXPECT_EQ(bell, 1u);
  // A batch published to slot 1 while the loop did not poll it is known
  // after one refresh, and taken without another read of the host's flag.
  EXPECT_FALSE(device_batch_known(d, 1));
  device_refresh_published(d, 1);
  device_doorbell_taken(d, bell);
  EXPECT_TRUE(device_batch_known(d, 1));
  BatchDesc got;
  ASSERT_TRUE(device_poll_batch(d, 1, &got));
  EXPECT_EQ(got.pass_id, 7u);
  EXPECT_FALSE(device_batch_known(d, 1));
  host_promote(h, 1, 1);
  EXPECT_EQ(device_read_doorbell(d), 2u);
  host_promote(h, 1, 1);  // no change: no news
  EXPECT_EQ(device_read_doorbell(d), 2u);
  ASSERT_TRUE(host_request_cancel(h, 7));
  EXPECT_EQ(device_read_doorbell(d), 3u);
  host_request_shutdown(h);
  EXPECT_EQ(device_read_doorbell(d), 4u);
  EXPECT_EQ(d.doorbell_seen, 1u);
}

}  // namespace
