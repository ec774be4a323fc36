// The control-block protocol on the CPU: host threads play both sides (a
// "device" thread runs the consumer loop on ordinary aligned host memory),
// through the same accessor functions the device loop calls. Thread
// interleavings vary from run to run; every assertion is an invariant that
// holds for all of them. Run many times and under ThreadSanitizer.
#include "device_scheduler/control_block.h"

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

namespace {

using Clock = std::chrono::steady_clock;

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

// A block in ordinary host memory, 64-byte aligned.
struct Block {
  void* mem = nullptr;
  ControlBlock* cb = nullptr;
  explicit Block(ControlBlockConfig cfg = {}) {
    const size_t bytes = control_block_bytes(cfg.out_capacity);
    mem = ::operator new(bytes, std::align_val_t{64});
    std::memset(mem, 0xA5, bytes);  // garbage before init
    cb = control_block_init(mem, bytes, cfg);
  }
  ~Block() { ::operator delete(mem, std::align_val_t{64}); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
};

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Every field is a function of the pass id: a consumer that reads a
// descriptor half old, half new sees fields that do not match its id.
BatchDesc make_desc(uint64_t pass_id) {
  const uint64_t h = mix(pass_id);
  BatchDesc d{};
  d.pass_id = pass_id;
  d.n_rows = 1 + uint32_t(h % 4096);
  d.n_seqs = uint16_t(1 + (h >> 12) % std::min<uint32_t>(d.n_rows, 64));
  d.n_sample = uint16_t((h >> 24) % (d.n_seqs + 1u));
  d.meta_index = uint16_t(h >> 32);
  d.bucket = uint16_t(h >> 48);
  d.cls = (pass_id % 3 == 0) ? PriorityClass::LS : PriorityClass::BE;
  return d;
}

bool desc_matches(const BatchDesc& d) {
  const BatchDesc want = make_desc(d.pass_id);
  return std::memcmp(&d, &want, sizeof d) == 0;
}

int32_t token_of(uint64_t pass_id, uint32_t row) { return int32_t(mix(pass_id * 131 + row) % 150000); }

// Shared by the threads of one test: the first failure, and a stop flag.
struct Failures {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first;
  void fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    if (first.empty()) first = what;
    stop.store(true);
  }
};

// Spins (yielding) until pred() or a deadline that only a hang reaches.
template <class Pred>
bool wait_until(Pred pred, Failures& f, double seconds = 30.0) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (!pred()) {
    if (f.stop.load() || Clock::now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

// Random pauses, so that each side sometimes runs far ahead of the other.
struct Jitter {
  std::mt19937 rng;
  explicit Jitter(uint32_t seed) : rng(seed) {}
  void maybe_pause(uint32_t one_in) {
    if (rng() % one_in == 0)
      for (uint32_t i = rng() % 64; i > 0; --i) std::this_thread::yield();
  }
};

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
