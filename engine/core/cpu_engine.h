// The cpu dispatcher: the engine (engine/core/engine.h) over the CPU
// reference model (engine/cpu/reference_model.h), which runs each work unit in
// fp32 on a paged KV store. The numerics reference for every GPU test, and the
// engine on a machine without a GPU.
#pragma once

#include "engine/core/engine.h"
#include "engine/cpu/reference_model.h"

#include <memory>
#include <vector>

namespace qllm {

// Runs units on the CPU reference model; samples on the host with
// sample_token (engine/cpu/sampling.h).
class CpuBackend final : public UnitBackend {
 public:
  CpuBackend(const cpu::ReferenceModel& model, int slots, int kv_blocks, int block_size);
  const ModelDesc& desc() const override { return model_.desc(); }
  void begin(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) override;
  int run(int slot, const sched::Cursor& unit) override;
  std::vector<int32_t> sampled(int slot) override;

 private:
  struct SlotPass {
    cpu::Pass pass;
    std::vector<int> experts;  // experts with tokens in the current layer, ascending
    std::vector<SampleSpec> sampling;
  };
  const cpu::ReferenceModel& model_;
  cpu::PagedKv kv_;
  std::vector<SlotPass> slots_;
};

// Owns its CpuBackend; constructed like the engine.
struct CpuBackendHolder {
  CpuBackend backend;
};

class CpuEngine : private CpuBackendHolder, public Engine {
 public:
  CpuEngine(const cpu::ReferenceModel& model, const EngineLimits& limits, Clock& clock)
      : CpuBackendHolder{CpuBackend(model, limits.ls_slots + limits.be_slots, limits.kv_blocks, limits.block_size)},
        Engine(backend, limits, clock) {}
};

}  // namespace qllm
