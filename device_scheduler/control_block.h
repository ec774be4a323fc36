// The control block: what the host and the GPU scheduler say to each other,
// in one allocation of pinned, mapped host memory (cudaHostAllocMapped).
//
// Host -> device: per-slot batch descriptors (two per slot, so the host
// prepares the next batch while the current one runs), per-slot priority
// promotion, an LS-pending hint, a ring of cancelled pass ids, shutdown.
// Device -> host: per-slot consume sequence, shutdown acknowledgement, the
// first device error, and the output ring (tokens, unit timings, pass ends),
// whose records follow the ControlBlock struct in the same allocation.
//
// Rules (the protocol and the argument for each handoff: README.md here):
// - One writer per field. Fields are grouped into 64-byte lines by writer
//   (`host` / `dev` members), so no cache line has writers on both sides.
// - Flag words only advance (sequence numbers); nothing is ever reset, and
//   nothing needs a read-modify-write across PCIe.
// - Flag words are accessed only through sync.h (acquire/release at system
//   scope); payload (descriptors, records, cancel ids, the error argument) is
//   plain data, written before the release of its flag, read after the
//   acquire of it.
// - Each side keeps its own copies of its counters in an "end" (HostEnd,
//   DrainEnd, DeviceEnd), so it reads the other side's fields only when it
//   needs a newer value, and never reads its own fields back across PCIe.
//
// Who calls what:
//   host_*    HostEnd: one host thread (the publisher)
//   drain_*   DrainEnd: one host thread (the output drain)
//   device_*  DeviceEnd: one thread of the scheduler block (on the GPU, the
//             DeviceEnd lives in device memory and persists across the
//             scheduler kernel's self-relaunches)
//   host_check_error: any host thread
#pragma once

#include "device_scheduler/policy.h"
#include "device_scheduler/sync.h"

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace qllm::sched {

inline constexpr uint32_t kControlBlockMagic = 0x42434C51u;  // "QLCB" little-endian
inline constexpr uint32_t kControlBlockVersion = 2;
inline constexpr uint32_t kCancelCapacity = 64;  // pending cancellations the ring holds
inline constexpr uint16_t kMetaBuffers = 2;      // device metadata buffers per slot (BatchDesc::meta_index)

// ---------------------------------------------------------------------------
// Payload types

// One batch: what a slot's next pass is. Small on purpose: positions, block
// tables and sequence lengths are copied by the host into the slot's device
// metadata buffer `meta_index` (and that copy completed) before the batch is
// published; the pass's begin unit makes that buffer the one its kernels
// read. Two buffers per slot: the host stages a pass queued behind the
// running one into the buffer the running one does not use (the buffer of
// publish sequence s is s % 2).
struct BatchDesc {
  uint64_t pass_id;     // engine-wide id of the pass, never 0
  uint32_t n_rows;      // token rows (decode tokens + prompt chunk tokens), >= 1
  uint16_t n_seqs;      // sequences in the pass, 1..n_rows
  uint16_t n_sample;    // sequences that sample a token at the head (token records), <= n_seqs
  uint16_t meta_index;  // which of the slot's device metadata buffers holds the pass's metadata
  uint16_t bucket;      // graph bucket: the captured row count the pass runs at
  PriorityClass cls;    // LS or BE
  uint8_t flags;        // reserved, 0
  uint16_t reserved;    // 0
};

enum class RecordKind : uint8_t {
  Invalid = 0,     // never written: a zeroed record
  Token = 1,       // a sampled token of one sequence (row) of a pass
  UnitTiming = 2,  // one work unit of a pass ran (globaltimer start/end)
  PassDone = 3,    // the pass's last record: completed, cancelled or abandoned
  PassStart = 4,   // the loop took the pass's batch (t_start_ns); like UnitTiming, may be dropped
};

inline constexpr uint8_t kRecordFinished = 1;   // Token: the sequence ended (stop token, length)
inline constexpr uint8_t kRecordCancelled = 2;  // PassDone: stopped early by a cancellation
inline constexpr uint8_t kRecordShutdown = 4;   // PassDone: abandoned at shutdown

// One record of the output ring (written by the device, drained by the host).
struct OutputRecord {
  uint64_t pass_id;
  uint64_t t_start_ns;  // globaltimer: UnitTiming start; Token/PassDone: when produced
  uint64_t t_end_ns;    // globaltimer: UnitTiming end
  uint32_t row;         // Token: the sequence's row among the pass's sampled sequences
  int32_t token;        // Token: the token id
  uint8_t slot;
  RecordKind kind;
  uint8_t flags;  // kRecord* bits
  uint8_t reserved0;
  Cursor unit;  // UnitTiming: which unit ran
  uint16_t reserved1;
};

// ---------------------------------------------------------------------------
// Layout. Every group is 64-byte aligned and written by one side only.

struct alignas(64) Header {  // host, once, before the device starts
  uint32_t magic;
  uint32_t version;
  uint32_t layout_bytes;  // sizeof(ControlBlock)
  uint32_t record_bytes;  // sizeof(OutputRecord)
  uint32_t n_slots;
  uint32_t out_capacity;      // records in the output ring
  uint32_t out_timing_limit;  // a UnitTiming record is pushed only while fewer are in the ring
  uint32_t cancel_capacity;
};

struct alignas(64) SlotHost {  // host
  BatchDesc desc[2];     // batch with publish sequence s lives in desc[s % 2]
  uint64_t publish_seq;  // batches published to this slot (0: none yet)
  uint64_t promote_seq;  // passes of this slot with publish sequence <= this count as LS
};
struct alignas(64) SlotDev {  // device
  uint64_t consume_seq;  // batches the device has taken (copied out of desc[])
};
struct Slot {
  SlotHost host;
  SlotDev dev;
};

struct alignas(64) CancelHost {  // host
  uint64_t ids[kCancelCapacity];  // pass ids; entry n (0-based) in ids[n % kCancelCapacity]
  uint64_t head;                  // entries written
};
struct alignas(64) CancelDev {  // device
  uint64_t tail;  // entries read
};
struct Cancels {
  CancelHost host;
  CancelDev dev;
};

struct alignas(64) LifeHost {  // host
  uint64_t shutdown_request;  // shutdown requests made (sequence; 0: none)
  uint64_t doorbell;          // advanced after every publish, promotion, cancellation, policy and shutdown request
  uint64_t be_max_wait_ns;    // payload of the doorbell: the policy's BE promotion wait
  uint32_t policy;            // payload of the doorbell: Policy + 1 (0: the loop keeps its configured one)
  uint32_t ls_pending;        // 1 while the host prepares an LS batch (a hint: stay awake)
};
struct alignas(64) LifeDev {  // device
  uint64_t shutdown_ack;  // the shutdown_request value the device has acted on
  uint64_t error_arg;     // payload of error_code, written before it
  uint32_t error_code;    // ErrorCode; 0 until the first device error, then never changes
};
struct Lifecycle {
  LifeHost host;
  LifeDev dev;
};

struct alignas(64) OutDev {  // device
  uint64_t head;             // records written; record n in records[n % out_capacity]
  uint64_t dropped_timings;  // UnitTiming records dropped because the ring was too full
};
struct alignas(64) OutHost {  // host (the drain thread)
  uint64_t tail;  // records drained
};
struct OutputRing {
  OutDev dev;
  OutHost host;
};

struct ControlBlock {
  Header header;
  Slot slot[kMaxSlots];
  Cancels cancel;
  Lifecycle life;
  OutputRing out;
  // followed by OutputRecord records[header.out_capacity]
};

static_assert(sizeof(BatchDesc) == 24 && alignof(BatchDesc) == 8);
static_assert(sizeof(Cursor) == 6);
static_assert(sizeof(OutputRecord) == 48 && alignof(OutputRecord) == 8);
static_assert(offsetof(OutputRecord, slot) == 32 && offsetof(OutputRecord, unit) == 36);
static_assert(sizeof(SlotHost) == 64 && offsetof(SlotHost, publish_seq) == 48);
static_assert(sizeof(Slot) == 128 && sizeof(Cancels) == 640 && sizeof(Lifecycle) == 128 &&
              sizeof(OutputRing) == 128);
static_assert(offsetof(ControlBlock, slot) == 64 && offsetof(ControlBlock, cancel) == 64 + 16 * 128 &&
              offsetof(ControlBlock, life) == 64 + 16 * 128 + 640 &&
              offsetof(ControlBlock, out) == 64 + 16 * 128 + 640 + 128);
static_assert(sizeof(ControlBlock) == 64 + kMaxSlots * 128 + 640 + 128 + 128 &&
              sizeof(ControlBlock) % 64 == 0 && alignof(ControlBlock) == 64);
static_assert(offsetof(CancelHost, head) % 8 == 0 && offsetof(LifeDev, error_code) % 4 == 0);
static_assert(std::is_standard_layout_v<ControlBlock> && std::is_trivially_copyable_v<ControlBlock>);
static_assert(std::is_standard_layout_v<OutputRecord> && std::is_trivially_copyable_v<OutputRecord>);
static_assert(std::is_standard_layout_v<BatchDesc> && std::is_trivially_copyable_v<BatchDesc>);

// The records of the output ring, right after the block (same offset on
// either side's mapping of the allocation).
QLLM_HD inline OutputRecord* output_records(ControlBlock* cb) {
  return reinterpret_cast<OutputRecord*>(reinterpret_cast<char*>(cb) + sizeof(ControlBlock));
}

// ---------------------------------------------------------------------------
// Device errors

enum class ErrorCode : uint32_t {
  None = 0,
  BadControlBlock = 1,  // arg: the magic/version/size word that did not match
  BadDescriptor = 2,    // arg: (slot << 32) | low 32 bits of the publish sequence
  GraphLaunch = 3,      // arg: the cudaError_t of a device-side cudaGraphLaunch
  BadExpertCount = 4,   // arg: (slot << 32) | layer of the attn unit whose counts were impossible
  Internal = 5,         // arg: a source line of the device loop
};

QLLM_HD inline const char* error_message(ErrorCode c) {
  switch (c) {
    case ErrorCode::None: return "no error";
    case ErrorCode::BadControlBlock:
      return "control block layout does not match the device code (magic, version or size)";
    case ErrorCode::BadDescriptor:
      return "invalid batch descriptor (pass id 0, no rows, more sequences than rows, "
             "more samples than sequences, or an unknown class)";
    case ErrorCode::GraphLaunch: return "device-side graph launch failed";
    case ErrorCode::BadExpertCount: return "a router unit wrote an out-of-range expert count";
    case ErrorCode::Internal: return "internal error in the device scheduler loop";
  }
  return "unknown device error code";
}

struct DeviceError {
  ErrorCode code = ErrorCode::None;
  uint64_t arg = 0;
  const char* message = "no error";
  explicit operator bool() const { return code != ErrorCode::None; }
};

// Any host thread. The first error the device raised, if any. The device owns
// the fields and writes them once (argument, then code with release).
inline DeviceError host_check_error(const ControlBlock& cb) {
  DeviceError e;
  e.code = static_cast<ErrorCode>(sync::load_acquire_sys(&cb.life.dev.error_code));
  if (e.code != ErrorCode::None) e.arg = cb.life.dev.error_arg;
  e.message = error_message(e.code);
  return e;
}

inline std::string format_device_error(const DeviceError& e) {
  return "device error " + std::to_string(static_cast<uint32_t>(e.code)) + ": " + e.message +
         " (arg " + std::to_string(e.arg) + ")";
}

// ---------------------------------------------------------------------------
// Creation (host, before the device starts)

struct ControlBlockConfig {
  uint32_t n_slots = 2;
  uint32_t out_capacity = 4096;       // records in the output ring, >= 2
  uint32_t out_timing_reserve = 1024;  // records kept free of UnitTiming, < out_capacity
};

// Bytes to allocate (cudaHostAlloc(..., cudaHostAllocMapped)) for a block
// with this many output records.
inline size_t control_block_bytes(uint32_t out_capacity) {
  return sizeof(ControlBlock) + size_t(out_capacity) * sizeof(OutputRecord);
}

// Constructs a zeroed block with its header in `mem` (64-byte aligned, at least
// control_block_bytes(cfg.out_capacity) bytes). Throws std::invalid_argument
// on a bad configuration. Must complete before the device reads the block
// (the kernel launch, or the start of a thread, orders it).
inline ControlBlock* control_block_init(void* mem, size_t bytes, const ControlBlockConfig& cfg) {
  if (cfg.n_slots < 1 || cfg.n_slots > uint32_t(kMaxSlots))
    throw std::invalid_argument("control block: n_slots must be 1.." + std::to_string(kMaxSlots) +
                                ", got " + std::to_string(cfg.n_slots));
  if (cfg.out_capacity < 2 || cfg.out_timing_reserve >= cfg.out_capacity)
    throw std::invalid_argument("control block: need out_capacity >= 2 and out_timing_reserve < "
                                "out_capacity, got " + std::to_string(cfg.out_capacity) + " and " +
                                std::to_string(cfg.out_timing_reserve));
  if (mem == nullptr || reinterpret_cast<uintptr_t>(mem) % 64 != 0 ||
      bytes < control_block_bytes(cfg.out_capacity))
    throw std::invalid_argument("control block: memory must be 64-byte aligned and hold " +
                                std::to_string(control_block_bytes(cfg.out_capacity)) + " bytes");
  auto* cb = new (mem) ControlBlock();  // value-initialised: every field 0
  OutputRecord* rec = output_records(cb);
  for (uint32_t i = 0; i < cfg.out_capacity; ++i) new (rec + i) OutputRecord();
  cb->header.magic = kControlBlockMagic;
  cb->header.version = kControlBlockVersion;
  cb->header.layout_bytes = uint32_t(sizeof(ControlBlock));
  cb->header.record_bytes = uint32_t(sizeof(OutputRecord));
  cb->header.n_slots = cfg.n_slots;
  cb->header.out_capacity = cfg.out_capacity;
  cb->header.out_timing_limit = cfg.out_capacity - cfg.out_timing_reserve;
  cb->header.cancel_capacity = kCancelCapacity;
  return cb;
}

// ---------------------------------------------------------------------------
// The three ends. Each holds a pointer to the block as its side maps it and
// its private copies of counters; each is used by one thread.

struct HostEnd {  // the host's publisher thread
  ControlBlock* cb = nullptr;
  uint32_t n_slots = 0;
  uint64_t published[kMaxSlots] = {};      // == cb->slot[s].host.publish_seq
  uint64_t consumed_seen[kMaxSlots] = {};  // last consume_seq read from the device
  uint64_t promoted[kMaxSlots] = {};       // == cb->slot[s].host.promote_seq
  uint64_t cancel_head = 0;                // == cb->cancel.host.head
  uint64_t cancel_tail_seen = 0;           // last cancel tail read from the device
  uint64_t shutdown_sent = 0;              // == cb->life.host.shutdown_request
  uint64_t doorbell = 0;                   // == cb->life.host.doorbell
};

struct DrainEnd {  // the host's output drain thread
  ControlBlock* cb = nullptr;
  const OutputRecord* records = nullptr;
  uint32_t capacity = 0;
  uint64_t tail = 0;  // == cb->out.host.tail
};

struct DeviceEnd {  // one thread of the scheduler block
  ControlBlock* cb = nullptr;  // the device's mapping of the block
  OutputRecord* records = nullptr;
  uint32_t n_slots = 0;
  uint32_t out_capacity = 0;
  uint32_t out_timing_limit = 0;
  uint32_t error = 0;                       // first ErrorCode raised (0: none)
  uint64_t consumed[kMaxSlots] = {};        // == cb->slot[s].dev.consume_seq
  uint64_t published_seen[kMaxSlots] = {};  // last publish_seq read from the host
  uint64_t cancel_tail = 0;                 // == cb->cancel.dev.tail
  uint64_t cancel_head_seen = 0;
  uint64_t out_head = 0;  // == cb->out.dev.head
  uint64_t out_tail_seen = 0;
  uint64_t dropped_timings = 0;  // == cb->out.dev.dropped_timings
  uint64_t shutdown_seen = 0;    // last shutdown_request read
  uint64_t shutdown_acked = 0;   // == cb->life.dev.shutdown_ack
  uint64_t doorbell_seen = 0;    // the doorbell value whose news the device has taken in
};

inline HostEnd make_host_end(ControlBlock* cb) {
  HostEnd e;
  e.cb = cb;
  e.n_slots = cb->header.n_slots;
  return e;
}

inline DrainEnd make_drain_end(ControlBlock* cb) {
  DrainEnd e;
  e.cb = cb;
  e.records = output_records(cb);
  e.capacity = cb->header.out_capacity;
  return e;
}

// `device_view`: the block's address on the device (cudaHostGetDevicePointer);
// `host_view`: the same block on the host, for its header. The host builds the
// DeviceEnd and copies it to device memory before the scheduler starts.
inline DeviceEnd make_device_end(ControlBlock* device_view, const ControlBlock& host_view) {
  DeviceEnd e;
  e.cb = device_view;
  e.records = output_records(device_view);
  e.n_slots = host_view.header.n_slots;
  e.out_capacity = host_view.header.out_capacity;
  e.out_timing_limit = host_view.header.out_timing_limit;
  return e;
}

// ---------------------------------------------------------------------------
// The doorbell: one host word that says "something new"
//
// Every host call that gives the device news (a batch, a promotion, a
// cancellation, a shutdown request) first release-stores its own flag, then
// advances the doorbell (release). The device loop acquires the doorbell once
// per cycle and polls the other flags only when it moved: one read of host
// memory per cycle instead of one per flag. A reader that sees doorbell n sees
// every flag written before the n-th ring.

// Host (the publisher thread; called by the host_* functions below).
inline void host_ring_doorbell(HostEnd& h) {
  h.doorbell += 1;
  sync::store_release_sys(&h.cb->life.host.doorbell, h.doorbell);
}

// Device. The doorbell's value now (one acquire). News since the last call
// to device_doorbell_taken when it differs from d.doorbell_seen.
QLLM_HD inline uint64_t device_read_doorbell(const DeviceEnd& d) {
  return sync::load_acquire_sys(&d.cb->life.host.doorbell);
}

// Device. The news up to `bell` (a value device_read_doorbell returned) has
// been polled.
QLLM_HD inline void device_doorbell_taken(DeviceEnd& d, uint64_t bell) { d.doorbell_seen = bell; }

// Host. The policy the loop applies from its next cycle on (passes running
// included). Call it while no pass is in flight: the two payload words are
// read together, after the doorbell.
inline void host_set_policy(HostEnd& h, const PolicyParams& p) {
  h.cb->life.host.be_max_wait_ns = p.be_max_wait_ns;
  h.cb->life.host.policy = uint32_t(p.policy) + 1;
  host_ring_doorbell(h);
}

// Device. After a doorbell acquire that showed news: the policy the host set,
// if any (else *p is left as it is).
QLLM_HD inline void device_read_policy(const DeviceEnd& d, PolicyParams* p) {
  const uint32_t v = d.cb->life.host.policy;
  if (v == 0 || v > 3) return;
  p->policy = Policy(v - 1);
  p->be_max_wait_ns = d.cb->life.host.be_max_wait_ns;
}

// Device. Refreshes the device's copy of the slot's publish sequence (one
// acquire); device_poll_batch then takes a batch without reading it again.
QLLM_HD inline void device_refresh_published(DeviceEnd& d, int slot) {
  d.published_seen[slot] = sync::load_acquire_sys(&d.cb->slot[slot].host.publish_seq);
}

// Device. Whether the slot has a published batch the device knows of and has
// not taken (no read of host memory).
QLLM_HD inline bool device_batch_known(const DeviceEnd& d, int slot) {
  return d.published_seen[slot] > d.consumed[slot];
}

// ---------------------------------------------------------------------------
// Batches

// Host. Publishes `desc` as the slot's next batch: writes the buffer of
// sequence s = published + 1, then release-stores publish_seq = s. The buffer
// desc[s % 2] last held batch s - 2; it is written only once the device has
// consumed s - 2 (acquire of consume_seq, so the device's reads of it are
// over). Returns false, writing nothing, while two batches are unconsumed:
// the caller retries later (and checks host_check_error meanwhile).
[[nodiscard]] inline bool host_publish_batch(HostEnd& h, int slot, const BatchDesc& desc) {
  assert(slot >= 0 && uint32_t(slot) < h.n_slots);
  const uint64_t s = h.published[slot] + 1;
  if (h.consumed_seen[slot] + 2 < s) {
    h.consumed_seen[slot] = sync::load_acquire_sys(&h.cb->slot[slot].dev.consume_seq);
    if (h.consumed_seen[slot] + 2 < s) return false;
  }
  h.cb->slot[slot].host.desc[s % 2] = desc;
  sync::store_release_sys(&h.cb->slot[slot].host.publish_seq, s);
  h.published[slot] = s;
  host_ring_doorbell(h);
  return true;
}

// Host. Batches published to the slot that the device has not taken yet
// (0, 1 or 2); refreshes the consume sequence.
inline uint32_t host_unconsumed(HostEnd& h, int slot) {
  assert(slot >= 0 && uint32_t(slot) < h.n_slots);
  h.consumed_seen[slot] = sync::load_acquire_sys(&h.cb->slot[slot].dev.consume_seq);
  return uint32_t(h.published[slot] - h.consumed_seen[slot]);
}

// Host. Every pass of the slot with publish sequence <= seq counts as LS from
// now on. Monotone: a smaller seq than an earlier call is ignored.
inline void host_promote(HostEnd& h, int slot, uint64_t seq) {
  assert(slot >= 0 && uint32_t(slot) < h.n_slots);
  if (seq <= h.promoted[slot]) return;
  h.promoted[slot] = seq;
  sync::store_release_sys(&h.cb->slot[slot].host.promote_seq, seq);
  host_ring_doorbell(h);
}

// Host. A hint that an LS batch is being prepared (its metadata copy is in
// flight): an idle device loop polls more often while it is set.
inline void host_set_ls_pending(HostEnd& h, bool pending) {
  sync::store_release_sys(&h.cb->life.host.ls_pending, pending ? 1u : 0u);
}

QLLM_HD inline bool valid_batch(const BatchDesc& d) {
  return d.pass_id != 0 && d.n_rows >= 1 && d.n_seqs >= 1 && d.n_seqs <= d.n_rows &&
         d.n_sample <= d.n_seqs && d.meta_index < kMetaBuffers &&
         (d.cls == PriorityClass::LS || d.cls == PriorityClass::BE);
}

QLLM_HD inline bool device_raise_error(DeviceEnd& d, ErrorCode code, uint64_t arg);

// Device. Takes the slot's next batch, once: if the host has published a
// sequence past the consumed one (acquire of publish_seq; skipped while an
// earlier acquire already showed one), copies desc[s % 2] into *out, then
// release-stores consume_seq = s, which hands the buffer back to the host.
// Returns false when there is none, or when the descriptor is invalid (then
// raises BadDescriptor and leaves it unconsumed, for the host to inspect).
QLLM_HD inline bool device_poll_batch(DeviceEnd& d, int slot, BatchDesc* out) {
  const uint64_t s = d.consumed[slot] + 1;
  if (d.published_seen[slot] < s) {
    d.published_seen[slot] = sync::load_acquire_sys(&d.cb->slot[slot].host.publish_seq);
    if (d.published_seen[slot] < s) return false;
  }
  const BatchDesc desc = d.cb->slot[slot].host.desc[s % 2];
  if (!valid_batch(desc)) {
    device_raise_error(d, ErrorCode::BadDescriptor, (uint64_t(slot) << 32) | (s & 0xffffffffu));
    return false;
  }
  sync::store_release_sys(&d.cb->slot[slot].dev.consume_seq, s);
  d.consumed[slot] = s;
  *out = desc;
  return true;
}

// Device. The pass id of the slot's k-th published batch the device has not
// taken yet (k = 1 or 2), 0 when it knows of none. Reads host memory (the
// descriptor, written before the publish sequence it acquired); that buffer is
// not rewritten before the batch is taken.
QLLM_HD inline uint64_t device_untaken_pass(const DeviceEnd& d, int slot, int k) {
  const uint64_t s = d.consumed[slot] + uint64_t(k);
  if (k < 1 || k > 2 || d.published_seen[slot] < s) return 0;
  return d.cb->slot[slot].host.desc[s % 2].pass_id;
}

// Device. Publish sequence of the batch last taken from the slot (0: none).
QLLM_HD inline uint64_t device_slot_seq(const DeviceEnd& d, int slot) { return d.consumed[slot]; }

// Device. Whether the slot's current pass (the batch last taken) was promoted to LS.
QLLM_HD inline bool device_promoted(const DeviceEnd& d, int slot) {
  return d.consumed[slot] != 0 &&
         sync::load_acquire_sys(&d.cb->slot[slot].host.promote_seq) >= d.consumed[slot];
}

// Device. The host's LS-pending hint.
QLLM_HD inline bool device_ls_pending(const DeviceEnd& d) {
  return sync::load_acquire_sys(&d.cb->life.host.ls_pending) != 0;
}

// ---------------------------------------------------------------------------
// Cancellations: a ring of pass ids, host -> device

// Host. Queues the cancellation of pass `pass_id`. Writes ids[head % cap] once
// the device has read the entry that slot held (acquire of its tail), then
// release-stores head + 1. Returns false, writing nothing, while the ring is
// full: the caller keeps the id and retries later.
[[nodiscard]] inline bool host_request_cancel(HostEnd& h, uint64_t pass_id) {
  if (h.cancel_head - h.cancel_tail_seen >= kCancelCapacity) {
    h.cancel_tail_seen = sync::load_acquire_sys(&h.cb->cancel.dev.tail);
    if (h.cancel_head - h.cancel_tail_seen >= kCancelCapacity) return false;
  }
  h.cb->cancel.host.ids[h.cancel_head % kCancelCapacity] = pass_id;
  h.cancel_head += 1;
  sync::store_release_sys(&h.cb->cancel.host.head, h.cancel_head);
  host_ring_doorbell(h);
  return true;
}

// Device. Calls f(pass_id) for every new cancellation, in order, then
// release-stores the tail once (handing the entries back). Returns how many.
template <class F>
QLLM_HD inline uint32_t device_poll_cancels(DeviceEnd& d, F&& f) {
  d.cancel_head_seen = sync::load_acquire_sys(&d.cb->cancel.host.head);
  uint32_t n = 0;
  for (; d.cancel_tail + n < d.cancel_head_seen; ++n)
    f(d.cb->cancel.host.ids[(d.cancel_tail + n) % kCancelCapacity]);
  if (n != 0) {
    d.cancel_tail += n;
    sync::store_release_sys(&d.cb->cancel.dev.tail, d.cancel_tail);
  }
  return n;
}

// ---------------------------------------------------------------------------
// Shutdown

// Host. Asks the device loop to stop; returns the request's sequence number.
inline uint64_t host_request_shutdown(HostEnd& h) {
  h.shutdown_sent += 1;
  sync::store_release_sys(&h.cb->life.host.shutdown_request, h.shutdown_sent);
  host_ring_doorbell(h);
  return h.shutdown_sent;
}

// Host. True once the device acknowledged the last request. Everything the
// device pushed to the output ring before its acknowledgement is visible to a
// drain that starts after this returns true.
inline bool host_shutdown_acked(const HostEnd& h) {
  return h.shutdown_sent != 0 &&
         sync::load_acquire_sys(&h.cb->life.dev.shutdown_ack) >= h.shutdown_sent;
}

// Device. True while a shutdown request is unacknowledged.
QLLM_HD inline bool device_shutdown_requested(DeviceEnd& d) {
  d.shutdown_seen = sync::load_acquire_sys(&d.cb->life.host.shutdown_request);
  return d.shutdown_seen > d.shutdown_acked;
}

// Device. Acknowledges the request seen by device_shutdown_requested, after
// the last output record (the PassDone of every abandoned pass) was pushed:
// the release orders those records before the acknowledgement. The loop then
// exits without relaunching itself.
QLLM_HD inline void device_ack_shutdown(DeviceEnd& d) {
  d.shutdown_acked = d.shutdown_seen;
  sync::store_release_sys(&d.cb->life.dev.shutdown_ack, d.shutdown_acked);
}

// ---------------------------------------------------------------------------
// Errors

// Device. Records the first error: the argument (plain), then the code
// (release). Later calls change nothing and return false; the device is the
// only writer, so "first wins" needs no read-modify-write. Other device code
// reports to the scheduler through device memory, not here. After raising, the
// loop stops without relaunching itself; the host reads host_check_error.
QLLM_HD inline bool device_raise_error(DeviceEnd& d, ErrorCode code, uint64_t arg) {
  if (d.error != 0 || code == ErrorCode::None) return false;
  d.error = static_cast<uint32_t>(code);
  d.cb->life.dev.error_arg = arg;
  sync::store_release_sys(&d.cb->life.dev.error_code, d.error);
  return true;
}

// Device. Checks the header the host wrote against this build's layout;
// raises BadControlBlock when it does not match.
QLLM_HD inline bool device_check_header(DeviceEnd& d) {
  const Header& h = d.cb->header;
  uint64_t bad = 0;
  if (h.magic != kControlBlockMagic) bad = h.magic;
  else if (h.version != kControlBlockVersion) bad = h.version;
  else if (h.layout_bytes != sizeof(ControlBlock)) bad = h.layout_bytes;
  else if (h.record_bytes != sizeof(OutputRecord)) bad = h.record_bytes;
  else return true;
  device_raise_error(d, ErrorCode::BadControlBlock, bad);
  return false;
}

// ---------------------------------------------------------------------------
// Output ring: device -> host, single producer, single consumer
//
// Overflow: the device never overwrites an undrained record and never waits
// for the host.
// - UnitTiming records may only fill the ring up to header.out_timing_limit;
//   past it they are dropped and counted in dropped_timings.
// - Token and PassDone records may fill it completely; when it is full the
//   push returns Full and the device keeps the record and retries on a later
//   cycle, and does not give the slot a new pass until the pass's last record
//   is out (device_output_free says how many pushes will succeed). Tokens are
//   never dropped: a slow drain slows the device down instead.

enum class PushResult : uint8_t { Pushed = 0, Full = 1, Dropped = 2 };

// Device. Free records, counting undrained ones as taken (refreshes the
// host's tail: one acquire). That many Token/PassDone pushes will succeed.
QLLM_HD inline uint32_t device_output_free(DeviceEnd& d) {
  d.out_tail_seen = sync::load_acquire_sys(&d.cb->out.host.tail);
  return d.out_capacity - uint32_t(d.out_head - d.out_tail_seen);
}

// Device. Writes `rec` into records[head % cap] once the host has drained the
// record that slot held (acquire of tail, re-read only when the cached value
// says there is no room), then release-stores head + 1.
QLLM_HD inline PushResult device_push_output(DeviceEnd& d, const OutputRecord& rec) {
  const bool timing = rec.kind == RecordKind::UnitTiming || rec.kind == RecordKind::PassStart;
  const uint64_t limit = timing ? d.out_timing_limit : d.out_capacity;
  if (d.out_head - d.out_tail_seen >= limit) {
    d.out_tail_seen = sync::load_acquire_sys(&d.cb->out.host.tail);
    if (d.out_head - d.out_tail_seen >= limit) {
      if (!timing) return PushResult::Full;
      d.dropped_timings += 1;  // a statistic: relaxed is enough
      sync::store_relaxed_sys(&d.cb->out.dev.dropped_timings, d.dropped_timings);
      return PushResult::Dropped;
    }
  }
  d.records[d.out_head % d.out_capacity] = rec;
  d.out_head += 1;
  sync::store_release_sys(&d.cb->out.dev.head, d.out_head);
  return PushResult::Pushed;
}

// Drain thread. Calls f(record) for up to `max` new records, in the order the
// device pushed them: acquire of head, copy of the record, release of
// tail + 1 (handing its slot back before f runs). Returns how many.
template <class F>
inline size_t host_drain_output(DrainEnd& r, F&& f, size_t max = SIZE_MAX) {
  const uint64_t head = sync::load_acquire_sys(&r.cb->out.dev.head);
  size_t n = 0;
  while (r.tail < head && n < max) {
    const OutputRecord rec = r.records[r.tail % r.capacity];
    r.tail += 1;
    sync::store_release_sys(&r.cb->out.host.tail, r.tail);
    f(rec);
    ++n;
  }
  return n;
}

// Any host thread. UnitTiming records the device dropped so far (final once
// the shutdown is acknowledged).
inline uint64_t host_dropped_timings(const ControlBlock& cb) {
  return sync::load_acquire_sys(&cb.out.dev.dropped_timings);
}

}  // namespace qllm::sched
