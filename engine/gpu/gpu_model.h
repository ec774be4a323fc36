// The GPU forward pass as work units: the twin of engine/cpu/reference_model.h,
// unit for unit, over a slot's fixed buffers (slot_buffers.h) and the shared
// paged KV cache. Each enqueue_* only launches kernels (kernels/*.h) and
// cuBLASLt plans (kernels/gemm.h, all planned in the constructor) on the
// given stream: no allocation, no synchronisation, no host read of device
// data, every per-step value read from the slot's device buffers. So each
// unit can be captured once into a CUDA graph (instantiated for device
// launch) and replayed for any step whose rows fit its bucket.
//
//   gpu::GpuModel m(weights, {.slots = 2, .slot = shape, .kv_blocks = 4096});
//   m.set_step(s, chunks, sampling, stream);         // host: pack + one copy
//   m.enqueue_begin(s, stream);                      // embedding
//   for (int l = 0; l < L; ++l) {
//     m.enqueue_attn(s, l, stream);                  // ... router, top-k, expert lists
//     for (int e = 0; e < m.units(l); ++e)           // experts ascending (the CPU's sum order)
//       m.enqueue_expert(s, l, e, bucket, stream);   // a no-op (on the device) when e got no rows
//   }
//   m.enqueue_head(s, stream);                       // final norm, LM head, sampling
//
// Units (T = the slot's max tokens, b = the unit's bucket; CPU: reference_model.cpp):
//
//   begin        x[t] = embed[token[t]]                               (fp32)
//   attn[l]      normed = rms(x)·w_in; qkv = normed·Wqkvᵀ; [QK norm]; [clip];
//                RoPE on q, k → KV cache (kv_slot[t]); attention (prefill or
//                decode kernel) → attn_out; x += attn_out·Woᵀ (GEMM accumulate);
//                normed = rms(x)·w_post (the experts' input, kept until the
//                next attn); MoE: router GEMM, top-k, expert lists (counts,
//                offsets, rows, weights); dense: counts = {rows, 0, ...}
//   expert[l][e] gather e's rows of normed → expert_in [b, H]; gate_up =
//                expert_in·Wguᵀ [b, 2F]; act = silu(gate)·up [b, F]; down =
//                act·Wdᵀ [b, H] fp32; x[row] += w·down (scatter_add). A count
//                of 0 makes the gather, SwiGLU and scatter no-ops, so x is
//                untouched (the GEMMs still run on the bucket's rows).
//                Dense layer (e = 0, weight 1): the GEMMs read normed directly
//                and the down GEMM accumulates into x.
//   head         normed = rms(x)·w_final (all rows); gather the logit rows →
//                head_in; logits = head_in·LMᵀ (fp32); tokens_out = sample
//
// Buckets: GEMMs compute all b rows of their bucket (kernels/gemm.h), so b
// must hold the unit's rows: attn b ≥ the step's rows (0 = R, the largest),
// expert b ≥ the expert's count (kernels clamp to b, so a smaller bucket
// silently drops rows), head b ≥ the logit rows (0 = the largest). Buckets
// are powers of two up to R = bucket_for(T) (Rl = bucket_for(S) for the head).
//
// Concurrency: units of different slots may run side by side (each slot has
// its own buffers and GEMM workspace); units of one slot run in order.
#pragma once

#include "engine/gpu/device_weights.h"
#include "engine/gpu/layout.h"
#include "engine/gpu/memory_plan.h"
#include "engine/gpu/slot_buffers.h"
#include "kernels/gemm.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <span>
#include <vector>

namespace qllm::gpu {

struct GpuModelConfig {
  int slots = 1;
  SlotShape slot;           // every slot's shape (and the KV block size); sm_count <= 0:
                            // the current device's multiprocessors
  int64_t kv_blocks = 0;    // blocks of slot.block_size tokens in the shared KV cache
  uint64_t gemm_workspace_bytes = kDefaultGemmWorkspaceBytes;
};

// Which attention kernel an attn unit runs (kernels/attention_*.h). Both are
// correct for any mix of rows; decode splits each row's keys over blocks and
// is the faster one for passes of decode rows only.
enum class AttnKernel : uint8_t { Prefill, Decode };

class GpuModel {
 public:
  // Allocates the KV cache and the slots' buffers and plans every GEMM of
  // every bucket. Throws qllm::Error when the model's shape is outside what
  // the kernels support (widths multiples of 8, head_dim <= 256, E <= 256,
  // top-k <= 32) or the configuration is invalid. `w` must outlive the model.
  GpuModel(const DeviceWeights& w, const GpuModelConfig& cfg);
  ~GpuModel();
  GpuModel(const GpuModel&) = delete;
  GpuModel& operator=(const GpuModel&) = delete;

  const ModelDesc& desc() const { return w_.desc(); }
  const GpuModelConfig& config() const { return cfg_; }
  const SlotLayout& slot_layout() const { return slot_layout_; }
  int num_slots() const { return int(slots_.size()); }
  SlotBuffers& slot(int s) { return *slots_.at(size_t(s)); }
  const SlotBuffers& slot(int s) const { return *slots_.at(size_t(s)); }
  const DeviceKv& kv() const { return *kv_; }
  // Units of layer l after attn: E experts, or 1 for a dense layer.
  int units(int layer) const { return w_.layer(layer).mlps; }
  int max_bucket() const { return slot_layout_.rows_alloc; }         // R
  int max_head_bucket() const { return slot_layout_.logit_alloc; }   // Rl
  size_t num_gemm_plans() const;

  // Host side of a step (not captured): SlotBuffers::set_step with this
  // model's KV geometry and vocabulary.
  StepInfo set_step(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const cuda::SamplingRow> sampling,
                    cudaStream_t stream, void* dst = nullptr);

  void enqueue_begin(int slot, cudaStream_t stream) const;
  void enqueue_attn(int slot, int layer, cudaStream_t stream, int bucket = 0,
                    AttnKernel kernel = AttnKernel::Prefill) const;
  void enqueue_expert(int slot, int layer, int expert, int bucket, cudaStream_t stream) const;
  void enqueue_head(int slot, cudaStream_t stream, int bucket = 0) const;

 private:
  // One plan per bucket index (log2 of the bucket).
  struct Plans {
    std::vector<const cuda::GemmPlan*> qkv, o, router, gate_up, down, dense_gate_up, dense_down, head;
  };
  int bucket_index(int bucket, int largest, const char* unit) const;
  cuda::GemmWorkspace workspace(int slot) const;

  const DeviceWeights& w_;
  GpuModelConfig cfg_;
  SlotLayout slot_layout_;
  std::unique_ptr<cuda::GemmContext> gemm_;
  std::unique_ptr<DeviceKv> kv_;
  std::vector<std::unique_ptr<SlotBuffers>> slots_;
  Plans plans_;
};

}  // namespace qllm::gpu
