// Device memory of the GPU forward pass that is not weights: the paged KV
// cache shared by all slots, and per slot a fixed set of buffers
// (layout.h SlotLayout: every buffer's shape) sized for the slot's maximum
// tokens and sequences per step. Shapes are frozen when a work unit's graph is
// captured; what changes per step is the metadata block at the start of the
// slot's allocation, which set_step() fills with one cudaMemcpyAsync from a
// pinned copy (step_metadata.h). Nothing else is ever copied per step.
#pragma once

#include "engine/gpu/layout.h"
#include "engine/gpu/step_metadata.h"
#include "kernels/sampling.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>

namespace qllm::gpu {

using bf16 = __nv_bfloat16;

// K and V of every layer, bf16 [num_blocks * block_size, kvd] each
// (slot = block * block_size + offset). Zeroed at allocation.
class DeviceKv {
 public:
  explicit DeviceKv(const KvLayout& layout);
  ~DeviceKv();
  DeviceKv(const DeviceKv&) = delete;
  DeviceKv& operator=(const DeviceKv&) = delete;

  const KvLayout& layout() const { return layout_; }
  KvGeometry geometry() const { return {layout_.block_size, layout_.num_blocks}; }
  bf16* k(int layer) const { return at(layout_.k_offset(layer)); }
  bf16* v(int layer) const { return at(layout_.v_offset(layer)); }

 private:
  bf16* at(uint64_t off) const { return reinterpret_cast<bf16*>(static_cast<uint8_t*>(base_) + off); }
  KvLayout layout_;
  void* base_ = nullptr;
};

// Device pointers of one slot (T max tokens, S max sequences, R and Rl the
// row allocations; shapes as in layout.h SlotLayout).
struct SlotPointers {
  // per-step metadata, written only by set_step
  int32_t* rows = nullptr;         // [1]
  int32_t* logit_count = nullptr;  // [1]
  int32_t* zero = nullptr;         // [1] always 0
  int32_t* tokens = nullptr;       // [T]
  int32_t* pos = nullptr;          // [T]  -1: padding
  int32_t* seq = nullptr;          // [T]  -1: padding
  int64_t* kv_slot = nullptr;      // [T]  -1: padding
  int32_t* tables = nullptr;       // [S, max_blocks_per_seq]
  int32_t* logit_rows = nullptr;   // [S]
  cuda::SamplingRow* sampling = nullptr;  // [S]
  // activations and routing, written by the work units
  float* x = nullptr;              // [R, H] fp32 residual stream
  bf16* normed = nullptr;          // [R, H]
  bf16* qkv = nullptr;             // [R, qd + 2 kvd]
  bf16* attn_out = nullptr;        // [R, qd]
  float* router_logits = nullptr;  // [R, E]
  int32_t* topk_ids = nullptr;     // [R, K]
  float* topk_w = nullptr;         // [R, K]
  int32_t* counts = nullptr;       // [E]
  int32_t* offsets = nullptr;      // [E + 1]
  int32_t* list_rows = nullptr;    // [R * K]
  float* list_w = nullptr;         // [R * K]
  bf16* expert_in = nullptr;       // [R, H]
  bf16* gate_up = nullptr;         // [R, 2 Fm]
  bf16* act = nullptr;             // [R, Fm]
  float* down = nullptr;           // [R, H]
  bf16* head_in = nullptr;         // [Rl, H]
  float* logits = nullptr;         // [Rl, V]
  int32_t* tokens_out = nullptr;   // [S]
  int32_t* error = nullptr;        // [1] sticky: kernels set 1, clear_error() resets
  void* attn_ws = nullptr;
  void* sampling_ws = nullptr;
  void* gemm_ws = nullptr;
};

class SlotBuffers {
 public:
  // One cudaMalloc for the whole layout, zeroed; a pinned copy of the
  // metadata block; an event that marks when that copy has been read.
  explicit SlotBuffers(const SlotLayout& layout);
  ~SlotBuffers();
  SlotBuffers(const SlotBuffers&) = delete;
  SlotBuffers& operator=(const SlotBuffers&) = delete;

  const SlotLayout& layout() const { return layout_; }
  const SlotPointers& ptr() const { return p_; }

  // Packs the pass (pack_step; throws qllm::Error when it does not fit or is
  // malformed, leaving the device untouched) into the pinned block and
  // enqueues one cudaMemcpyAsync of it into the device metadata on `stream`.
  // Waits on the host until the previous set_step's copy has read the pinned
  // block. Host side of a step: never called inside a capture. The copy
  // overwrites what the slot's units read, so enqueue it on the stream those
  // units run on (or order it after them).
  // `dst`: another device buffer of metadata_bytes() to copy into instead
  // (the device dispatcher's staging buffers; its begin graphs copy them in).
  StepInfo set_step(const KvGeometry& kv, int vocab, std::span<const cpu::SeqChunk> chunks,
                    std::span<const cuda::SamplingRow> sampling, cudaStream_t stream, void* dst = nullptr);
  // The metadata block the slot's kernels read, and its size.
  void* metadata() const { return base_; }
  size_t metadata_bytes() const { return layout_.step.bytes; }

  // The sticky error flag (synchronises the stream), and its reset.
  int32_t error(cudaStream_t stream) const;
  void clear_error(cudaStream_t stream);

 private:
  SlotLayout layout_;
  void* base_ = nullptr;
  std::byte* pinned_ = nullptr;
  cudaEvent_t copied_ = nullptr;
  SlotPointers p_;
};

}  // namespace qllm::gpu
