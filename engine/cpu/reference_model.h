// The CPU reference forward pass (fp32 arithmetic), split into the work units
// of DESIGN.md so that each unit is the specification of its GPU twin:
//
//   begin        embedding of the pass's tokens into the residual stream x
//   attn[L]      input norm, Q/K/V (+ QK norm, clip), RoPE, paged KV write,
//                causal GQA attention over each token's own sequence, output
//                projection, residual add, post-attention norm, router, top-k,
//                per-expert token lists
//   expert[L][e] for the tokens routed to e: gate/up, SiLU x up, down, weighted
//                add into x (a dense layer is one unit, expert 0, weight 1)
//   head         final norm and LM head for the rows that need logits
//
// A pass batches chunks of several sequences (prefill chunks and decode
// tokens alike). Every op works per token row in a fixed order, so a
// sequence's logits are bit-identical whatever it is batched with, and a pass
// can stop after any unit and resume later with nothing recomputed: all its
// state is in the Pass. Experts of a layer run in ascending index order.
#pragma once

#include "engine/model/checkpoint.h"
#include "engine/model/model_desc.h"

#include <cstdint>
#include <span>
#include <vector>

namespace qllm::cpu {

// K and V of every layer in fixed-size blocks: [layer][block * block_size +
// offset][kv_dim]. Which blocks a sequence owns is the caller's business
// (engine/kv's BlockManager); a pass gets each sequence's block table.
struct PagedKv {
  int layers = 0, num_blocks = 0, block_size = 0, kv_dim = 0;
  std::vector<float> k, v;
  PagedKv() = default;
  PagedKv(int layers_, int num_blocks_, int block_size_, int kv_dim_);
  int64_t slots() const { return int64_t(num_blocks) * block_size; }
  float* k_at(int layer, int64_t slot) { return k.data() + (layer * slots() + slot) * kv_dim; }
  float* v_at(int layer, int64_t slot) { return v.data() + (layer * slots() + slot) * kv_dim; }
  const float* k_at(int layer, int64_t slot) const { return k.data() + (layer * slots() + slot) * kv_dim; }
  const float* v_at(int layer, int64_t slot) const { return v.data() + (layer * slots() + slot) * kv_dim; }
};

// One sequence's share of a pass: `tokens` at positions start_pos.. (the KV of
// positions before start_pos is already in the blocks of `block_table`).
struct SeqChunk {
  std::span<const int32_t> tokens;
  int start_pos = 0;
  std::span<const int32_t> block_table;  // must cover start_pos + tokens.size() positions
  bool logits = true;                    // produce logits for the chunk's last token
};

// State of one forward pass between units.
struct Pass {
  int T = 0;                      // token rows
  std::vector<int32_t> tokens;    // [T]
  std::vector<int> pos;           // [T] position in its sequence
  std::vector<int> seq;           // [T] index of its chunk
  std::vector<int64_t> slot;      // [T] KV slot it writes
  std::vector<std::vector<int32_t>> tables;  // per chunk: block table
  std::vector<int> logit_rows;    // rows the head computes, ascending
  std::vector<float> x;           // [T, H] residual stream
  std::vector<float> h;           // [T, H] post-attention norm output (expert input)
  std::vector<int> topk_ids;      // [T, k] of the last attn unit
  std::vector<float> topk_w;      // [T, k]
  std::vector<std::vector<int>> expert_tokens;     // per expert: token rows, ascending
  std::vector<std::vector<float>> expert_weights;  // per expert: routing weight per row
  std::vector<float> logits;      // [logit_rows.size(), V] after head
};

// A contiguous cache for one sequence: a PagedKv of one block of max_len.
struct KvCache {
  PagedKv kv;
  int len = 0;  // positions written
  int max_len = 0;
};

class ReferenceModel {
 public:
  // Copies every weight to fp32. Throws qllm::Error when the checkpoint's
  // weights cannot be read.
  explicit ReferenceModel(const Checkpoint& ck);

  const ModelDesc& desc() const { return desc_; }

  PagedKv new_paged_kv(int num_blocks, int block_size) const;
  KvCache new_cache(int max_len) const;

  // Starts a pass over the chunks (at least one token in all). Throws
  // qllm::Error for a token outside the vocabulary or a block table that does
  // not cover the chunk.
  Pass begin(const PagedKv& kv, std::span<const SeqChunk> chunks) const;
  void attn_unit(Pass& p, PagedKv& kv, int layer) const;
  // Experts that received tokens in the last attn unit, ascending.
  std::vector<int> active_experts(const Pass& p) const;
  void expert_unit(Pass& p, int layer, int expert) const;
  void head_unit(Pass& p) const;

  // The whole pass, unit by unit. Returns logits [logit rows, vocab].
  std::vector<float> forward(PagedKv& kv, std::span<const SeqChunk> chunks) const;

  // One sequence with a contiguous cache: appends `tokens` and returns the
  // logits of every row (all_rows) or of the last one.
  Pass begin(KvCache& cache, std::span<const int32_t> tokens, bool all_rows = false) const;
  std::vector<float> forward(KvCache& cache, std::span<const int32_t> tokens,
                             bool all_rows = false) const;

 private:
  struct Mlp {  // one expert, or a dense MLP
    int ffn = 0;
    std::vector<float> gate, up, down;  // [ffn,H], [ffn,H], [H,ffn]
  };
  struct Layer {
    std::vector<float> input_norm, post_norm, q, k, v, o, q_norm, k_norm, router;
    std::vector<Mlp> mlps;  // experts (MoE) or one dense MLP
  };
  void run_units(Pass& p, PagedKv& kv) const;
  ModelDesc desc_;
  std::vector<float> embed_, final_norm_, lm_head_;  // lm_head_ empty when tied
  std::vector<Layer> layers_;
};

}  // namespace qllm::cpu
