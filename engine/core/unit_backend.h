// What runs a work unit: the seam between the engine (requests, batching, KV
// blocks, the policy; engine/core/engine.h) and the hardware. The cpu
// dispatcher's backend runs the CPU reference model (engine/core/cpu_engine.h);
// the host dispatcher's backend launches the unit's CUDA graph. A backend owns
// the KV storage and each slot's pass state; the engine owns which blocks a
// sequence has (BlockManager) and tells the backend through block tables.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/cpu/reference_model.h"
#include "engine/cpu/sampling.h"
#include "engine/model/model_desc.h"

#include <cstdint>
#include <span>
#include <vector>

namespace qllm {

// How to sample one chunk's next token: its parameters and the index of the
// token in its request's output (the counter of the seeded draw).
struct SampleSpec {
  SamplingParams params;
  uint64_t step = 0;
};

class UnitBackend {
 public:
  virtual ~UnitBackend() = default;
  virtual const ModelDesc& desc() const = 0;

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

}  // namespace qllm
