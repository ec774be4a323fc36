// The scheduler loop: one cycle of the device dispatcher, as a plain
// QLLM_HD function of its state and an executor.
//
// On the GPU (device_loop.cu) one thread of a one-block kernel calls
// loop_cycle() once per kernel execution: the kernel lives in its own graph,
// instantiated for device launch, and tail-launches itself while the cycle
// says Relaunch. The unit graph a cycle launches (fire-and-forget) is a child
// of that kernel's graph, and a tail launch starts only after the launching
// graph and all its children have finished: so when a cycle starts, the unit
// the previous cycle launched is complete, its outputs (expert counts,
// sampled tokens, the error word) are in device memory, and its end time is
// "now". On the CPU the same function runs in a host thread over an
// executor that runs the CPU reference model's units (tests), so the whole
// protocol, policy and bookkeeping are tested without a GPU.
//
// A cycle, in order:
//   1. retire the unit the previous cycle launched: its UnitTiming record;
//      the slot's error word (nonzero ends the pass, flagged kRecordBadData);
//      after an attn unit, the layer's expert list (ids and row counts, read
//      from what the router wrote) and the cursor steps past it (policy.h
//      advance); after the head, the pass moves to "flushing";
//   2. the host's doorbell (control_block.h), one read of host memory: only
//      when it moved are the shutdown request, the policy, the slots'
//      publish sequences, promotions and cancellations read; a shutdown
//      request stops the taking of batches;
//   3. cancellations from the host: a running pass they name ends at this
//      boundary (PassDone with kRecordCancelled, no tokens); a pass published
//      behind a busy slot's pass and not taken yet is marked, and ends the
//      moment the slot takes it, before its first unit;
//   4. passes that ended push their Token records and their PassDone; a full
//      ring keeps them for a later cycle (the slot takes no new batch until
//      its PassDone is out). At shutdown every running pass is abandoned
//      first (PassDone with kRecordShutdown), and once every record is out
//      the loop acknowledges and exits;
//   5. free slots take the next batch the host published (device_poll_batch;
//      a PassStart record says when); a promoted BE pass counts as LS. This
//      comes after 4, so a slot whose pass ended this cycle takes the batch
//      the host queued behind it at once: back-to-back passes of one slot
//      need no host round trip;
//   6. the policy (pick_slot) chooses a slot and the cycle launches its next
//      unit: begin (the embedding) once per pass, then attn / expert / head
//      as its cursor says. Nothing to run: a bounded idle wait that ends
//      early when the host publishes work, cancels or shuts down.
//
// Every path that cannot continue raises a device error (control_block.h) and
// exits; the host sees it in host_check_error, never as a hang.
//
// Executor interface (what a cycle needs from the hardware):
//   uint64_t now_ns()                          a monotonic clock (globaltimer)
//   void sleep_ns(uint32_t ns)                 a short pause (__nanosleep)
//   bool launch_begin(int slot, const BatchDesc&)
//   bool launch_unit(int slot, const BatchDesc&, const Cursor&, const LoopSlot&)
//        false when the launch failed; error_arg() then says why
//   uint64_t error_arg()                       the last launch failure's argument
//   int expert_list(int slot, int layer, const BatchDesc&, LoopSlot&)
//        after an attn unit: fills ls.expert_id / ls.expert_rows with the
//        experts that received rows, ascending, and returns how many; -1 when
//        the counts are impossible (a row count < 0 or > n_rows, or more rows
//        in all than n_rows times the layer's fan-out)
//   int32_t take_error_word(int slot)          the kernels' error word, reset to 0
//   int32_t sampled_token(int slot, int i)     after the head: token of sampled row i
#pragma once

#include "device_scheduler/control_block.h"
#include "device_scheduler/policy.h"

#include <cstdint>

namespace qllm::sched {

inline constexpr int kMaxLoopExperts = 256;     // kernels support E <= 256

// BatchDesc.flags
inline constexpr uint8_t kBatchDecodeOnly = 1;  // every chunk has one token: the decode attention graphs

// PassDone flags beyond control_block.h's
inline constexpr uint8_t kRecordBadData = 8;  // a kernel flagged bad per-step data; no tokens

enum class LoopAction : uint8_t { Relaunch = 0, Exit = 1 };

// The device loop's view of one slot's pass (device memory on the GPU).
struct LoopSlot {
  BatchDesc desc;
  uint8_t begun;       // the begin unit ran
  uint8_t flushing;    // the pass ended; its records are being pushed
  uint8_t end_flags;   // PassDone flags
  uint8_t reserved;
  uint32_t pushed;     // Token records pushed while flushing
  uint32_t emit_tokens;  // Token records to push (n_sample after a head, else 0)
  int32_t n_experts;     // experts with rows in the cursor's layer
  uint64_t cancelled_untaken[2];  // cancelled passes published to the slot and not taken yet (0: none)
  int16_t expert_id[kMaxLoopExperts];
  int32_t expert_rows[kMaxLoopExperts];
};

struct LoopConfig {
  int32_t layers = 0;
  uint32_t idle_wait_ns = 20000;    // longest idle wait before relaunching
  uint32_t idle_poll_ns = 1000;     // pause between two polls while idle
  uint32_t ls_poll_ns = 200;        // the pause while the host's LS-pending hint is set
  PolicyParams policy;
};

// Everything the loop keeps across its relaunches (one object, device memory
// on the GPU; built by the host with loop_state_init and copied there).
struct LoopState {
  DeviceEnd end;
  LoopConfig cfg;
  SlotTable table;
  LoopSlot slot[kMaxSlots];
  int32_t running_slot;       // slot whose unit the previous cycle launched (-1: none)
  uint8_t running_begin;      // that unit was the begin unit
  uint8_t header_checked;
  uint8_t exited;             // the loop returned Exit (error or shutdown)
  uint8_t reserved;
  Cursor running_unit;
  uint64_t running_start_ns;
  uint64_t cycles;
  uint64_t units_launched;
  uint64_t idle_cycles;
};

inline LoopState loop_state_init(const DeviceEnd& end, const LoopConfig& cfg) {
  LoopState s{};
  s.end = end;
  s.cfg = cfg;
  s.table.n_slots = int32_t(end.n_slots);
  s.table.last = -1;
  s.running_slot = -1;
  return s;
}

namespace detail {

QLLM_HD inline bool slot_free(const LoopState& L, int s) {
  return !L.table.slot[s].active && !L.slot[s].flushing;
}

// Ends the slot's pass now (no further unit): its records are pushed by flush().
QLLM_HD inline void end_pass(LoopState& L, int s, uint8_t flags, uint32_t tokens) {
  L.table.slot[s].active = 0;
  L.table.slot[s].cursor.kind = UnitKind::Done;
  LoopSlot& ls = L.slot[s];
  ls.flushing = 1;
  ls.end_flags = flags;
  ls.pushed = 0;
  ls.emit_tokens = tokens;
}

// Pushes a flushing slot's remaining records; true when its PassDone is out.
template <class Exec>
QLLM_HD inline bool flush(LoopState& L, int s, Exec& x, uint64_t now) {
  LoopSlot& ls = L.slot[s];
  while (ls.pushed < ls.emit_tokens) {
    OutputRecord r{};
    r.pass_id = ls.desc.pass_id;
    r.t_start_ns = now;
    r.row = ls.pushed;
    r.token = x.sampled_token(s, int(ls.pushed));
    r.slot = uint8_t(s);
    r.kind = RecordKind::Token;
    if (device_push_output(L.end, r) != PushResult::Pushed) return false;
    ++ls.pushed;
  }
  OutputRecord r{};
  r.pass_id = ls.desc.pass_id;
  r.t_start_ns = now;
  r.slot = uint8_t(s);
  r.kind = RecordKind::PassDone;
  r.flags = ls.end_flags;
  if (device_push_output(L.end, r) != PushResult::Pushed) return false;
  ls.flushing = 0;
  return true;
}

// Step 1: the unit the previous cycle launched has finished.
template <class Exec>
QLLM_HD inline bool retire(LoopState& L, Exec& x, uint64_t now) {
  const int s = L.running_slot;
  L.running_slot = -1;
  LoopSlot& ls = L.slot[s];
  SlotState& st = L.table.slot[s];
  if (L.running_begin) {
    ls.begun = 1;
    return true;
  }
  OutputRecord t{};
  t.pass_id = ls.desc.pass_id;
  t.t_start_ns = L.running_start_ns;
  t.t_end_ns = now;
  t.slot = uint8_t(s);
  t.kind = RecordKind::UnitTiming;
  t.unit = L.running_unit;
  device_push_output(L.end, t);  // may be dropped (counted), never blocks
  if (x.take_error_word(s) != 0) {
    end_pass(L, s, kRecordBadData, 0);
    return true;
  }
  switch (L.running_unit.kind) {
    case UnitKind::Attn: {
      const int n = x.expert_list(s, L.running_unit.layer, ls.desc, ls);
      if (n < 0 || n > kMaxLoopExperts) {
        device_raise_error(L.end, ErrorCode::BadExpertCount,
                           (uint64_t(uint32_t(s)) << 32) | uint32_t(L.running_unit.layer));
        return false;
      }
      ls.n_experts = n;
      advance(st, L.cfg.layers, n);
      return true;
    }
    case UnitKind::Expert:
      advance(st, L.cfg.layers, 0);
      return true;
    case UnitKind::Head:
      advance(st, L.cfg.layers, 0);
      end_pass(L, s, 0, ls.desc.n_sample);
      return true;
    case UnitKind::Done:
      break;
  }
  device_raise_error(L.end, ErrorCode::Internal, __LINE__);
  return false;
}

// Step 6: launches the slot's next unit.
template <class Exec>
QLLM_HD inline bool launch_next(LoopState& L, int s, Exec& x, uint64_t now) {
  LoopSlot& ls = L.slot[s];
  const SlotState& st = L.table.slot[s];
  const bool begin = !ls.begun;
  if (!begin && (st.cursor.kind == UnitKind::Done ||
                 (st.cursor.kind == UnitKind::Expert && (st.cursor.expert < 0 || st.cursor.expert >= ls.n_experts)))) {
    device_raise_error(L.end, ErrorCode::Internal, __LINE__);
    return false;
  }
  const bool ok = begin ? x.launch_begin(s, ls.desc) : x.launch_unit(s, ls.desc, st.cursor, ls);
  if (!ok) {
    device_raise_error(L.end, ErrorCode::GraphLaunch, x.error_arg());
    return false;
  }
  L.running_slot = s;
  L.running_begin = begin ? 1 : 0;
  L.running_unit = st.cursor;
  L.running_start_ns = now;
  L.table.last = s;
  L.units_launched += 1;
  return true;
}

// Whether the host has rung the doorbell since the loop last took its news
// in (one acquire of host memory).
QLLM_HD inline bool host_has_news(const LoopState& L) {
  return device_read_doorbell(L.end) != L.end.doorbell_seen;
}

}  // namespace detail

// One cycle. Returns Relaunch while the loop should run again, Exit after a
// shutdown it acknowledged or a device error it raised.
template <class Exec>
QLLM_HD inline LoopAction loop_cycle(LoopState& L, Exec& x) {
  using namespace detail;
  if (L.exited) return LoopAction::Exit;
  L.cycles += 1;
  if (!L.header_checked) {
    if (!device_check_header(L.end)) {
      L.exited = 1;
      return LoopAction::Exit;
    }
    L.header_checked = 1;
  }
  const int n = int(L.end.n_slots);
  uint64_t now = x.now_ns();

  // 1. the unit launched last cycle is done
  if (L.running_slot >= 0 && !retire(L, x, now)) {
    L.exited = 1;
    return LoopAction::Exit;
  }

  // 2.-3. the host's news: one read of the doorbell; the other flags only
  //        when it moved
  const uint64_t bell = device_read_doorbell(L.end);
  const bool news = bell != L.end.doorbell_seen;
  const bool shutdown = L.end.shutdown_seen > L.end.shutdown_acked || (news && device_shutdown_requested(L.end));
  if (news) {  // the policy, and every slot's publish sequence (a batch for a busy slot is known when it frees)
    device_read_policy(L.end, &L.cfg.policy);
    for (int s = 0; s < n; ++s) device_refresh_published(L.end, s);
  }
  if (news) {
    for (int s = 0; s < n; ++s)  // promotions of running BE passes
      if (L.table.slot[s].active && L.table.slot[s].cls == PriorityClass::BE && device_promoted(L.end, s))
        L.table.slot[s].cls = PriorityClass::LS;
    // 3. cancellations: a running pass they name ends at this boundary; a
    //    pass queued behind a busy slot's pass ends when the slot takes it
    bool refreshed = false;
    device_poll_cancels(L.end, [&](uint64_t id) {
      if (!refreshed) {  // a cancel is written after the publish it names: read the publish sequences again
        for (int s = 0; s < n; ++s) device_refresh_published(L.end, s);
        refreshed = true;
      }
      for (int s = 0; s < n; ++s) {
        if (L.table.slot[s].active && L.slot[s].desc.pass_id == id) end_pass(L, s, kRecordCancelled, 0);
        for (int k = 1; k <= 2; ++k)
          if (device_untaken_pass(L.end, s, k) == id) L.slot[s].cancelled_untaken[k - 1] = id;
      }
    });
    device_doorbell_taken(L.end, bell);
  }

  // 4. push the records of passes that ended; at shutdown, abandon the
  //    running ones first, then acknowledge once everything is out
  bool all_out = true;
  for (int s = 0; s < n; ++s) {
    if (shutdown && L.table.slot[s].active) end_pass(L, s, kRecordShutdown, 0);
    if (L.slot[s].flushing && !flush(L, s, x, now)) all_out = false;
  }
  if (shutdown) {
    if (all_out) {
      device_ack_shutdown(L.end);
      L.exited = 1;
      return LoopAction::Exit;
    }
    x.sleep_ns(L.cfg.idle_poll_ns);  // the drain makes room
    return LoopAction::Relaunch;
  }

  // 5. new batches for free slots (after the flush, so a slot whose pass
  //    ended this cycle takes the batch queued behind it at once)
  for (int s = 0; s < n; ++s) {
    if (!slot_free(L, s) || !device_batch_known(L.end, s)) continue;
    BatchDesc d;
    if (!device_poll_batch(L.end, s, &d)) {
      if (L.end.error) {
        L.exited = 1;
        return LoopAction::Exit;
      }
      continue;
    }
    LoopSlot& ls = L.slot[s];
    ls.desc = d;
    ls.begun = 0;
    ls.n_experts = 0;
    publish(L.table.slot[s], d.cls, now);
    if (device_promoted(L.end, s)) L.table.slot[s].cls = PriorityClass::LS;
    OutputRecord r{};
    r.pass_id = d.pass_id;
    r.t_start_ns = now;
    r.slot = uint8_t(s);
    r.kind = RecordKind::PassStart;
    device_push_output(L.end, r);  // may be dropped (counted), never blocks
    for (uint64_t& c : ls.cancelled_untaken)
      if (c == d.pass_id) {  // cancelled while it waited: ends before its first unit
        c = 0;
        end_pass(L, s, kRecordCancelled, 0);
        all_out = false;  // its PassDone goes out next cycle
      }
  }

  // 6. the policy's pick
  const int pick = pick_slot(L.table, now, L.cfg.policy);
  if (pick >= 0) {
    if (!launch_next(L, pick, x, now)) {
      L.exited = 1;
      return LoopAction::Exit;
    }
    return LoopAction::Relaunch;
  }

  // idle: wait a bounded time for the host (briefly while records wait for
  // room in the ring)
  L.idle_cycles += 1;
  if (!all_out) {
    x.sleep_ns(L.cfg.idle_poll_ns);
    return LoopAction::Relaunch;
  }
  const uint64_t until = now + L.cfg.idle_wait_ns;
  while (!host_has_news(L)) {
    x.sleep_ns(device_ls_pending(L.end) ? L.cfg.ls_poll_ns : L.cfg.idle_poll_ns);
    now = x.now_ns();
    if (now >= until) break;
  }
  return LoopAction::Relaunch;
}

}  // namespace qllm::sched
