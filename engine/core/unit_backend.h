// The seam between the engine (requests, batching, KV blocks;
// engine/core/engine.h) and the hardware. Two kinds of backend:
//
// - UnitBackend: the engine runs the policy and asks for one work unit at a
//   time. The cpu dispatcher's backend runs the CPU reference model
//   (engine/core/cpu_engine.h); the host dispatcher's launches the unit's
//   CUDA graph (engine/gpu/host_backend.h).
// - PassBackend: the engine hands over whole passes and collects their
//   tokens; which unit runs when is decided by the backend, with the same
//   policy code (the device dispatcher: the scheduler loop on the GPU,
//   engine/core/loop_backend.h).
//
// A backend owns the KV storage and each slot's pass state; the engine owns
// which blocks a sequence has (BlockManager) and tells the backend through
// block tables.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/core/clock.h"
#include "engine/core/request.h"
#include "engine/cpu/reference_model.h"
#include "engine/cpu/sampling.h"
#include "engine/model/model_desc.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qllm {

// How to sample one chunk's next token: its parameters and the index of the
// token in its request's output (the counter of the seeded draw).
struct SampleSpec {
  SamplingParams params;
  uint64_t step = 0;
};

class UnitBackend;
class PassBackend;

// What every backend has; the engine asks which kind it is.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const ModelDesc& desc() const = 0;
  virtual UnitBackend* as_unit_backend() { return nullptr; }
  virtual PassBackend* as_pass_backend() { return nullptr; }
};

class UnitBackend : public Backend {
 public:
  UnitBackend* as_unit_backend() final { return this; }

  // Starts a pass in `slot` over `chunks` (cpu::SeqChunk: tokens, first
  // position, block table, whether it wants logits). `sampling` has one entry
  // per chunk that wants logits, in chunk order. Throws qllm::Error for a pass
  // the backend cannot hold.
  virtual void begin(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) = 0;

  // Runs the slot's next unit. After an attn unit, returns how many expert
  // units follow in that layer (experts that received tokens; 1 for a dense
  // layer); otherwise 0.
  virtual int run(int slot, const sched::Cursor& unit) = 0;

  // After the head unit: the sampled token of each chunk that wanted logits,
  // in chunk order.
  virtual std::vector<int32_t> sampled(int slot) = 0;
};

// One work unit as it ran (for tests, traces and preemption latency).
struct UnitRecord {
  int slot = -1;
  sched::Cursor unit;
  double start_s = 0, end_s = 0;
  uint64_t pass_id = 0;  // PassBackend: the pass the unit belongs to (0: not known)
};

// How a pass handed to a PassBackend ended.
enum class PassStatus : uint8_t {
  Done,       // every unit ran; `tokens` holds the sampled tokens
  Cancelled,  // stopped at a unit boundary by PassBackend::cancel; no tokens
  Abandoned,  // stopped by the backend's shutdown; no tokens
  Failed,     // a kernel found bad per-step data; no tokens, `error` says what
};

struct PassResult {
  int slot = -1;
  uint64_t pass_id = 0;
  PassStatus status = PassStatus::Done;
  std::vector<int32_t> tokens;  // Done: one per chunk that wanted logits, in chunk order
  std::string error;            // Failed: the reason
  double taken_s = -1;          // when the backend started the pass (its scheduler took it; engine
                                // clock), -1 when not known
};

class PassBackend : public Backend {
 public:
  PassBackend* as_pass_backend() final { return this; }

  // Called by each engine that starts over the backend, while no pass is in
  // flight: the policy the backend's scheduler applies from now on, and the
  // clock later collect() calls map unit times onto.
  virtual void attach(const sched::PolicyParams& policy, const Clock& clock) = 0;

  // Hands a pass to `slot`, which has no pass (the last one's result was
  // collected). `pass_id` is nonzero and unique. `sampling` as in
  // UnitBackend::begin. Throws qllm::Error for a pass the backend cannot
  // hold, or when the backend has stopped.
  virtual void publish(int slot, uint64_t pass_id, PriorityClass cls, std::span<const cpu::SeqChunk> chunks,
                       std::span<const SampleSpec> sampling) = 0;

  // Asks for a published pass to stop at its next unit boundary (its result
  // is then Cancelled). Best effort: a pass that finishes first, or one the
  // backend has not started, ends Done.
  virtual void cancel(uint64_t pass_id) = 0;

  // Waits at most `timeout_s` for results; appends every finished pass (in
  // the order they finished) to `done` and the units that ran to `units`,
  // their times mapped onto `clock`. Throws qllm::Error when the backend
  // failed (a device error, with its message), after which it takes nothing.
  virtual void collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, double timeout_s,
                       const Clock& clock) = 0;
};

}  // namespace qllm
