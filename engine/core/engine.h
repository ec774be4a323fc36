// The engine: requests in, tokens out, with the slot and work-unit structure
// of DESIGN.md, over a UnitBackend that runs the units (the CPU reference
// model on the cpu dispatcher: engine/core/cpu_engine.h).
//
// Slots. `ls_slots` slots take latency-sensitive passes, `be_slots` slots
// best-effort passes. A free slot gets the next batch of its class:
// continuous batching, decode tokens of running sequences first, then prompt
// chunks of at most prefill_chunk tokens, in arrival order, within
// max_tokens_per_step tokens and max_seqs_per_step sequences, and only for
// sequences whose KV blocks can be reserved. A sequence is in at most one pass
// at a time. (QLLM's four queues map here: LS decode, LS prefill for LS slots;
// BE decode, BE prefill for BE slots. LS slots take no BE work, so an LS pass
// is never slowed by BE tokens.)
//
// Dispatch, over a UnitBackend: before every work unit the policy
// (device_scheduler/policy.h, the same code the device loop runs) picks the
// slot; the backend runs that slot's next unit. Over a PassBackend (the
// device dispatcher): a formed batch is published to the backend as a whole
// pass, the backend's scheduler (the same policy, on the GPU) picks the
// units, and step() collects finished passes and the units that ran. With
// queue_prefill, a slot whose pass runs gets a second pass queued behind it
// when prompt work waits and no decode row does: next chunks of the running
// prompts (a sequence is then in two passes, its KV written in order) and
// chunks of new prompts. If the running pass ends without tokens, a chunk
// queued behind it for the same sequence is stale: dropped when its pass
// ends, and computed again. Either
// way, when a pass ends, its sampled tokens go to the sequences that asked
// for logits, KV is marked computed, and finished sequences free their
// blocks. A pass that ends without tokens (cancelled, abandoned) leaves its
// sequences where they were: their next pass recomputes its positions.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/core/clock.h"
#include "engine/core/request.h"
#include "engine/core/unit_backend.h"
#include "engine/kv/block_manager.h"

#include <deque>
#include <functional>
#include <map>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace qllm {

struct EngineLimits {
  int ls_slots = 1, be_slots = 1;
  int max_tokens_per_step = 256;
  int max_seqs_per_step = 32;
  int prefill_chunk = 128;
  int kv_blocks = 256;
  int block_size = 16;
  sched::Policy policy = sched::Policy::PriorityExpert;
  double be_max_wait_s = 0;  // 0: BE is never promoted
  // Over a PassBackend: while a slot's pass runs, a pass of prompt chunks
  // (new prompts, next chunks of the prompts in the running pass) is
  // published behind it, so the device starts it with no host round trip.
  bool queue_prefill = true;
};

class Engine {
 public:
  // The backend (a UnitBackend or a PassBackend) must hold limits.kv_blocks
  // blocks of limits.block_size tokens and limits.ls_slots + limits.be_slots
  // slots, and outlive the engine. Over a PassBackend the clock must be real
  // time (WallClock, RealTimeClock): the passes run on their own.
  Engine(Backend& backend, const EngineLimits& limits, Clock& clock);
  ~Engine();

  // Queues a request. Throws qllm::Error (and queues nothing) for an empty
  // prompt, a token outside the vocabulary, a duplicate id, or a request that
  // could never fit in the KV cache.
  void submit(Request r);

  // Runs one scheduling decision and the unit it picks, appending any
  // sampled tokens to `out`. Returns false when no pass is active and none
  // can be formed (the caller may then submit more or advance the clock).
  // Over a PassBackend: publishes the batches that can form, then waits (at
  // most pass_wait_s) for finished passes.
  bool step(std::vector<TokenEvent>& out);
  // How long step() waits for a PassBackend's results (default 100 us: the
  // caller's new requests wait at most this long to be batched).
  void set_pass_wait(double s) { pass_wait_s_ = s; }

  // Cancels a queued or running request: it ends with a Cancelled event in
  // `out` (now, or when the pass it is in finishes, since that pass still
  // writes its KV blocks) and its blocks are freed. False for an unknown or
  // finished id.
  bool cancel(uint64_t id, std::vector<TokenEvent>& out);

  bool idle() const;  // no request queued or running
  const std::vector<UnitRecord>& unit_log() const { return log_; }
  const std::map<uint64_t, RequestTiming>& timings() const { return timings_; }
  const BlockManager& blocks() const { return *blocks_; }
  // Removes and returns a finished request's timing (a long-running server
  // calls this so the table does not grow); nullopt while it runs.
  std::optional<RequestTiming> release_timing(uint64_t id);
  // Waiting: admitted, nothing computed yet and not in a pass; running: the rest.
  int num_waiting() const;
  int num_running() const;
  int num_waiting(PriorityClass cls) const;
  int num_running(PriorityClass cls) const;
  // Both counts of both classes in one pass over the requests.
  struct ClassCounts {
    int waiting[2] = {0, 0}, running[2] = {0, 0};  // indexed by PriorityClass
  };
  ClassCounts class_counts() const;
  int64_t num_preemptions() const { return preemptions_; }
  // Passes of this class set aside for another slot's unit.
  int64_t num_preemptions(PriorityClass cls) const { return class_preemptions_[int(cls)]; }
  // Keep at most this many unit records (the oldest are dropped); default: all.
  void set_unit_log_limit(size_t n) { log_limit_ = n; }

 private:
  struct Seq;
  struct Part;
  struct PassWork;
  struct SlotWork;
  bool form_batch(int slot, bool queued);
  void run_unit(int slot);
  bool step_units(std::vector<TokenEvent>& out);
  bool step_passes(std::vector<TokenEvent>& out);
  void log_unit(const UnitRecord& rec);
  void count_preemption(int slot, const PassWork& pass);
  bool leave_pass(Seq& s, const Part& part);
  void finish_pass(int slot, std::vector<TokenEvent>& out, const std::vector<int32_t>& sampled);
  void abort_pass(int slot, std::vector<TokenEvent>& out);
  void end_request(uint64_t id, Finish fin, double now);
  uint64_t now_ns() const;

  Backend& backend_;
  UnitBackend* units_ = nullptr;   // exactly one of these two
  PassBackend* passes_ = nullptr;
  EngineLimits lim_;
  Clock& clock_;
  std::unique_ptr<BlockManager> blocks_;
  sched::SlotTable table_;
  std::vector<std::unique_ptr<SlotWork>> slots_;
  std::map<uint64_t, std::unique_ptr<Seq>> seqs_;  // by id: arrival order for equal times
  std::map<uint64_t, RequestTiming> timings_;
  std::vector<UnitRecord> log_;
  int64_t preemptions_ = 0;
  int64_t class_preemptions_[2] = {0, 0};
  size_t log_limit_ = SIZE_MAX;
  // A batch can only newly form after a submit or a finished pass (new work,
  // freed blocks, sequences back from a pass): idle slots are re-examined then.
  bool batches_may_form_ = false;
  // PassBackend: pass ids, the pass of the unit reported last, what collect()
  // returned, and how long it waits.
  uint64_t next_pass_id_ = 0;
  int last_unit_slot_ = -1;
  uint64_t last_unit_pass_ = 0;
  double pass_wait_s_ = 100e-6;
  std::vector<PassResult> results_;
  std::vector<UnitRecord> units_ran_;
};

}  // namespace qllm
