// Where the GPU forward pass keeps everything in device memory, as pure
// functions of the model's shape: no CUDA call here, so the CPU tests check
// every offset and byte count, and the memory planner (memory_plan.h), the
// weight upload (device_weights.h) and the slot buffers (slot_buffers.h) all
// read the same numbers.
//
// Notation (as in engine/model/tensor_names.h): H hidden, V vocab, nh heads,
// nkv kv heads, hd head_dim, qd = nh*hd, kvd = nkv*hd, E experts, K top-k,
// F expert width, D dense-MLP width, Fm = max(F, D).
//
// Every region starts on a 256-byte boundary (kAlign: what cudaMalloc gives
// and what the cuBLASLt plans assume, kernels/gemm.h), so any region can be a
// GEMM operand.
#pragma once

#include "engine/common/dtype.h"
#include "engine/model/model_desc.h"

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace qllm::gpu {

inline constexpr uint64_t kAlign = 256;
constexpr uint64_t align_up(uint64_t v, uint64_t a = kAlign) { return (v + a - 1) / a * a; }

// A byte range inside one allocation.
struct Region {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint64_t end() const { return offset + bytes; }
};

// ---- weights -----------------------------------------------------------------
//
// One allocation holds every weight, in this order (each matrix 256-aligned):
//
//   embed        [V, H]
//   final_norm   [H]
//   lm_head      [V, H]            absent when tied (the embedding serves)
//   per layer l:
//     input_norm [H]   post_norm [H]
//     qkv        [qd + 2 kvd, H]   q_proj rows, then k_proj rows, then v_proj
//                                  rows: one GEMM gives a fused QKV row
//     o          [H, qd]
//     q_norm     [hd] (per head) or [qd] (full width); k_norm [hd] or [kvd]
//                                  only with a QK norm
//     router     [E, H]            MoE layers only
//     per MLP m (E experts, or the one dense MLP):
//       gate_up  [2 ffn, H]        gate rows, then up rows (kernels/silu_mul.h)
//       down     [H, ffn]
//
// The global tensors come first, so the first n layers are a prefix of the
// allocation (model.max_layers keeps a prefix).

// One checkpoint tensor (per-expert roles) and where its rows land.
struct WeightPiece {
  TensorRole role = TensorRole::Embed;
  int layer = -1;   // -1 for global tensors
  int expert = -1;  // ExpertGate/Up/Down only
  int64_t rows = 0, cols = 0;
  uint64_t offset = 0;  // bytes from the start of the allocation
  int64_t numel() const { return rows * cols; }
};

struct LayerWeightOffsets {
  uint64_t begin = 0, end = 0;  // this layer's bytes: [begin, end)
  uint64_t input_norm = 0, post_norm = 0, qkv = 0, o = 0;
  bool qk_norm = false;
  uint64_t q_norm = 0, k_norm = 0;
  bool moe = false;
  uint64_t router = 0;
  int mlps = 0;  // E for a MoE layer, 1 for a dense one
  int ffn = 0;   // F or D
  std::vector<uint64_t> gate_up, down;  // per MLP
};

struct WeightLayout {
  DType dtype = DType::BF16;
  uint64_t elem = 2;  // bytes per element
  uint64_t embed = 0, final_norm = 0, lm_head = 0;  // lm_head == embed when tied
  bool tied = false;
  uint64_t global_bytes = 0;  // embed, final norm, LM head (aligned)
  std::vector<LayerWeightOffsets> layers;
  std::vector<WeightPiece> pieces;  // every checkpoint tensor, in allocation order
  uint64_t total_bytes = 0;

  uint64_t layer_bytes(int l) const { return layers[size_t(l)].end - layers[size_t(l)].begin; }
};

WeightLayout plan_weight_layout(const ModelDesc& d, DType dtype = DType::BF16);

// ---- one slot's buffers ------------------------------------------------------

struct SlotShape {
  int max_tokens = 256;      // T: token rows per step (scheduler.max_tokens_per_step)
  int max_seqs = 32;         // S: sequences (chunks) per step, so at most S logit rows
  int max_seq_len = 4096;    // positions one sequence may reach
  int block_size = 16;       // tokens per KV block
  int sampling_blocks = 8;   // thread blocks of sample_tokens (min with S)
  int sm_count = 132;        // multiprocessors: attention_decode's split count

  int max_blocks_per_seq() const { return (max_seq_len + block_size - 1) / block_size; }
};

// The per-step metadata: one contiguous block that the host packs
// (step_metadata.h) and copies with one cudaMemcpyAsync. Padding entries hold
// the sentinel -1, which kernels skip (and a bad read shows up as an error).
struct StepLayout {
  int rows_cap = 0, seqs_cap = 0, max_blocks_per_seq = 0;
  Region rows;         // int32 [1]      token rows this step
  Region logit_count;  // int32 [1]      logit rows this step
  Region zero;         // int32 [1]      0: the head gather's list offset
  Region tokens;       // int32 [T]      token ids
  Region pos;          // int32 [T]      position of the row in its sequence
  Region seq;          // int32 [T]      the row's chunk (row of tables)
  Region kv_slot;      // int64 [T]      KV slot the row writes
  Region tables;       // int32 [S, max_blocks_per_seq]  block ids per chunk
  Region logit_rows;   // int32 [S]      rows the head computes, ascending
  Region sampling;     // cuda::SamplingRow [S]  per logit row
  uint64_t bytes = 0;
};

StepLayout plan_step_layout(int rows_cap, int seqs_cap, int max_blocks_per_seq);

// Everything a slot owns, in one allocation. R = bucket_for(T) rows for every
// activation (the largest GEMM bucket; GEMMs compute all rows of a bucket),
// Rl = bucket_for(S) rows for the head.
struct SlotLayout {
  SlotShape shape;
  int rows_alloc = 0;   // R
  int logit_alloc = 0;  // Rl
  int qkv_width = 0;    // qd + 2 kvd
  int ffn_max = 0;      // Fm
  int experts = 0;      // E (at least 1)
  int top_k = 0;        // K (at least 1)
  std::vector<int> decode_splits;  // attention_decode splits per row bucket (1, 2, 4, ... R)

  StepLayout step;      // metadata, at offset 0
  Region x;             // fp32 [R, H]        residual stream
  Region normed;        // bf16 [R, H]        input norm, then post-attention norm (expert input),
                        //                    then final norm
  Region qkv;           // bf16 [R, qd+2kvd]  fused q | k | v rows
  Region attn_out;      // bf16 [R, qd]
  Region router_logits; // fp32 [R, E]
  Region topk_ids;      // int32 [R, K]
  Region topk_w;        // fp32 [R, K]
  Region counts;        // int32 [E]          rows per expert (dense layer: counts[0] = rows)
  Region offsets;       // int32 [E + 1]
  Region list_rows;     // int32 [R * K]      per-expert rows, experts back to back
  Region list_w;        // fp32 [R * K]
  Region expert_in;     // bf16 [R, H]        one expert's gathered rows
  Region gate_up;       // bf16 [R, 2 Fm]
  Region act;           // bf16 [R, Fm]       silu(gate) * up
  Region down;          // fp32 [R, H]        one expert's output before the weighted scatter
  Region head_in;       // bf16 [Rl, H]       final-normed logit rows
  Region logits;        // fp32 [Rl, V]
  Region tokens_out;    // int32 [S]          sampled token per logit row
  Region error;         // int32 [1]          sticky error flag of the kernels
  Region attn_ws;       // attention_decode workspace (the largest over the row buckets)
  Region sampling_ws;   // sample_tokens workspace
  Region gemm_ws;       // cuBLASLt workspace of this slot's GEMMs
  uint64_t bytes = 0;

  // Every region above with its name, in offset order (tests, logs).
  std::vector<std::pair<std::string_view, Region>> regions() const;
};

SlotLayout plan_slot_layout(const ModelDesc& d, const SlotShape& s, uint64_t gemm_workspace_bytes);

// ---- KV cache ------------------------------------------------------------------
//
// K then V of each layer: [layers][2][num_blocks * block_size][kvd] in `dtype`.
struct KvLayout {
  int layers = 0;
  int64_t num_blocks = 0;
  int block_size = 0;
  int kv_dim = 0;
  uint64_t elem = 2;
  int64_t slots() const { return num_blocks * block_size; }
  uint64_t half_bytes() const { return uint64_t(slots()) * uint64_t(kv_dim) * elem; }  // K (or V) of a layer
  uint64_t layer_bytes() const { return 2 * half_bytes(); }
  uint64_t total_bytes() const { return uint64_t(layers) * layer_bytes(); }
  uint64_t k_offset(int l) const { return uint64_t(l) * layer_bytes(); }
  uint64_t v_offset(int l) const { return k_offset(l) + half_bytes(); }
};

KvLayout plan_kv_layout(const ModelDesc& d, int64_t num_blocks, int block_size, DType dtype = DType::BF16);

}  // namespace qllm::gpu
