// The whole control-block protocol at once, on the CPU: a miniature of the
// device loop on a thread, a publisher thread and a drain thread (see
// scheduler_control_block_test.cpp for the protocol pieces one by one).

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

// ---------------------------------------------------------------------------
// The whole protocol at once: a miniature of the device loop on a thread
// (poll cancels, take batches into free slots, pick a slot with the shared
// policy, run one unit, push its timing, flush a finished pass's tokens and
// PassDone as ring room allows; on shutdown, abandon running passes, flush,
// acknowledge), a publisher thread and a drain thread.

constexpr int kLoopLayers = 3;

int experts_of(uint64_t pass_id, int layer) { return int(mix(pass_id * 7 + uint64_t(layer)) % 3); }
uint8_t token_flags(uint64_t pass_id, uint32_t row) {
  return (mix(pass_id) + row) % 5 == 0 ? kRecordFinished : uint8_t(0);
}

struct SimLoop {
  enum class State { Free, Running, Flushing };
  struct Pass {
    State state = State::Free;
    BatchDesc desc{};
    uint32_t tokens = 0;  // token records to flush
    uint32_t row = 0;     // next one to push
    uint8_t done_flags = 0;
  };
  DeviceEnd d;
  SlotTable table;
  PolicyParams params;
  Pass pass[kMaxSlots];
  std::set<uint64_t> cancelled;
  uint64_t clock = 0;
  bool abandoning = false;

  explicit SimLoop(ControlBlock* cb) : d(make_device_end(cb, *cb)) {
    table.n_slots = int32_t(d.n_slots);
    params.policy = Policy::PriorityExpert;
  }

  void finish(int s, uint32_t tokens, uint8_t flags) {
    table.slot[s].active = 0;
    pass[s].state = State::Flushing;
    pass[s].tokens = tokens;
    pass[s].row = 0;
    pass[s].done_flags = flags;
  }

  // Pushes what fits; true once the PassDone is out.
  bool flush(int s) {
    Pass& p = pass[s];
    for (; p.row < p.tokens; ++p.row) {
      OutputRecord r{};
      r.kind = RecordKind::Token;
      r.pass_id = p.desc.pass_id;
      r.slot = uint8_t(s);
      r.row = p.row;
      r.token = token_of(p.desc.pass_id, p.row);
      r.flags = token_flags(p.desc.pass_id, p.row);
      r.t_start_ns = now_ns();
      if (device_push_output(d, r) != PushResult::Pushed) return false;
    }
    OutputRecord r{};
    r.kind = RecordKind::PassDone;
    r.pass_id = p.desc.pass_id;
    r.slot = uint8_t(s);
    r.flags = p.done_flags;
    if (device_push_output(d, r) != PushResult::Pushed) return false;
    p.state = State::Free;
    return true;
  }

  // One scheduler cycle; false once the loop has exited (shutdown acked).
  bool cycle() {
    if (!abandoning && device_shutdown_requested(d)) abandoning = true;
    device_poll_cancels(d, [&](uint64_t id) { cancelled.insert(id); });
    bool busy = false;
    for (int s = 0; s < table.n_slots; ++s) {
      Pass& p = pass[s];
      if (p.state == State::Running && (abandoning || cancelled.count(p.desc.pass_id)))
        finish(s, 0, abandoning ? kRecordShutdown : kRecordCancelled);
      if (p.state == State::Flushing) flush(s);
      if (p.state == State::Free && !abandoning && device_poll_batch(d, s, &p.desc)) {
        p.state = State::Running;
        publish(table.slot[s], device_promoted(d, s) ? PriorityClass::LS : p.desc.cls, clock);
        if (cancelled.count(p.desc.pass_id)) finish(s, 0, kRecordCancelled);
      }
      busy = busy || p.state != State::Free;
    }
    if (abandoning && !busy) {
      device_ack_shutdown(d);
      return false;
    }
    const int s = pick_slot(table, clock, params);
    if (s < 0) return true;
    SlotState& st = table.slot[s];
    OutputRecord r{};
    r.kind = RecordKind::UnitTiming;
    r.pass_id = pass[s].desc.pass_id;
    r.slot = uint8_t(s);
    r.unit = st.cursor;
    r.t_start_ns = now_ns();
    const int experts = st.cursor.kind == UnitKind::Attn ? experts_of(r.pass_id, st.cursor.layer) : 0;
    const bool done = advance(st, kLoopLayers, experts);
    r.t_end_ns = now_ns();
    (void)device_push_output(d, r);  // a timing may be dropped
    table.last = s;
    ++clock;
    if (done) finish(s, pass[s].desc.n_sample, 0);
    return true;
  }
};

TEST(SchedulerControlBlock, LoopShutdownMidWorkloadLosesNothing) {
  constexpr int kSlots = 3;
  constexpr uint64_t kPasses = 1500;  // published before the shutdown request
  ControlBlockConfig cfg;
  cfg.n_slots = kSlots;
  cfg.out_capacity = 32;
  cfg.out_timing_reserve = 8;
  Block b(cfg);
  Failures f;
  std::atomic<bool> acked{false};

  std::thread device([&] {
    SimLoop loop(b.cb);
    Jitter j(23);
    if (!device_check_header(loop.d)) return f.fail("header rejected");
    const auto end = Clock::now() + std::chrono::seconds(30);
    while (loop.cycle()) {
      if (f.stop.load()) return;
      if (Clock::now() > end) return f.fail("device loop: timed out");
      j.maybe_pause(8);
    }
  });
  std::vector<OutputRecord> records;
  std::thread drain([&] {
    DrainEnd r = make_drain_end(b.cb);
    Jitter j(29);
    auto keep = [&](const OutputRecord& rec) { records.push_back(rec); };
    while (!acked.load() && !f.stop.load()) {
      host_drain_output(r, keep, 1 + j.rng() % 16);
      j.maybe_pause(4);
    }
    host_drain_output(r, keep);  // the ack happened before: this sees the last record
  });

  HostEnd h = make_host_end(b.cb);
  Jitter j(31);
  std::map<uint64_t, int> slot_of;              // pass id -> slot
  std::vector<std::vector<uint64_t>> by_slot(kSlots);  // pass ids in publish order
  std::set<uint64_t> cancel_requested;
  uint64_t next_id = 1;
  const auto end = Clock::now() + std::chrono::seconds(30);
  while (next_id <= kPasses && !f.stop.load() && Clock::now() < end) {
    for (int s = 0; s < kSlots && next_id <= kPasses; ++s) {
      BatchDesc desc = make_desc(next_id);
      desc.cls = s == 0 ? PriorityClass::LS : PriorityClass::BE;  // slot 0 takes LS passes
      if (!host_publish_batch(h, s, desc)) continue;
      slot_of[next_id] = s;
      by_slot[s].push_back(next_id);
      if (next_id % 5 == 0 &&
          wait_until([&] { return host_request_cancel(h, next_id); }, f))
        cancel_requested.insert(next_id);
      ++next_id;
    }
    j.maybe_pause(8);
  }
  const auto t0 = Clock::now();
  host_request_shutdown(h);
  const bool ok = wait_until([&] { return host_shutdown_acked(h) || bool(host_check_error(*b.cb)); }, f, 10.0);
  const double shutdown_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  acked.store(true);
  drain.join();
  device.join();
  ASSERT_EQ(f.first, "");
  ASSERT_TRUE(ok) << "no shutdown acknowledgement";
  ASSERT_FALSE(host_check_error(*b.cb)) << format_device_error(host_check_error(*b.cb));
  EXPECT_LT(shutdown_ms, 5000.0);
  RecordProperty("shutdown_ms", std::to_string(shutdown_ms));
  RecordProperty("timings_dropped", std::to_string(host_dropped_timings(*b.cb)));

  // What the device took: a prefix of each slot's publish order.
  std::set<uint64_t> consumed;
  for (int s = 0; s < kSlots; ++s) {
    const uint64_t n = b.cb->slot[s].dev.consume_seq;
    ASSERT_LE(n, by_slot[s].size());
    EXPECT_LE(by_slot[s].size() - n, 2u) << "at most the two buffers wait";
    EXPECT_EQ(host_unconsumed(h, s), by_slot[s].size() - n);
    for (uint64_t k = 0; k < n; ++k) consumed.insert(by_slot[s][k]);
  }
  struct Seen {
    uint32_t tokens = 0;
    int done = 0;
    uint8_t done_flags = 0;
  };
  std::map<uint64_t, Seen> seen;
  for (const OutputRecord& rec : records) {
    ASSERT_TRUE(consumed.count(rec.pass_id)) << "record for pass " << rec.pass_id << " never taken";
    Seen& x = seen[rec.pass_id];
    ASSERT_EQ(x.done, 0) << "record after PassDone of pass " << rec.pass_id;
    EXPECT_EQ(rec.slot, slot_of[rec.pass_id]);
    if (rec.kind == RecordKind::Token) {
      EXPECT_EQ(rec.row, x.tokens) << "pass " << rec.pass_id;
      EXPECT_EQ(rec.token, token_of(rec.pass_id, rec.row));
      EXPECT_EQ(rec.flags, token_flags(rec.pass_id, rec.row));
      ++x.tokens;
    } else if (rec.kind == RecordKind::PassDone) {
      x.done = 1;
      x.done_flags = rec.flags;
    } else {
      ASSERT_EQ(rec.kind, RecordKind::UnitTiming);
      EXPECT_LE(rec.t_start_ns, rec.t_end_ns);
    }
  }
  uint64_t completed = 0, cancelled = 0, abandoned = 0;
  for (uint64_t id : consumed) {
    const Seen& x = seen[id];
    ASSERT_EQ(x.done, 1) << "pass " << id << " taken but never reported";
    if (x.done_flags == 0) {
      EXPECT_EQ(x.tokens, make_desc(id).n_sample) << "pass " << id;
      ++completed;
    } else {
      EXPECT_EQ(x.tokens, 0u);
      if (x.done_flags == kRecordCancelled) {
        EXPECT_TRUE(cancel_requested.count(id)) << "pass " << id << " cancelled unasked";
        ++cancelled;
      } else {
        EXPECT_EQ(x.done_flags, kRecordShutdown);
        ++abandoned;
      }
    }
  }
  EXPECT_GT(completed, 0u);
  EXPECT_EQ(completed + cancelled + abandoned, consumed.size());
  RecordProperty("completed", std::to_string(completed));
  RecordProperty("cancelled", std::to_string(cancelled));
  RecordProperty("abandoned", std::to_string(abandoned));
}

}  // namespace
