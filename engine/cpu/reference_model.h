// The CPU reference forward pass (fp32 arithmetic), split into the work units
// of DESIGN.md so that each unit is the specification of its GPU twin:
//
//   begin        embedding of the pass's tokens into the residual stream x
//   attn[L]      input norm, Q/K/V (+ QK norm, clip), RoPE, KV write, causal
//                GQA attention, output projection, residual add, post-attention
//                norm, router, top-k, per-expert token lists
//   expert[L][e] for the tokens routed to e: gate/up, SiLU x up, down, weighted
//                add into x (a dense layer is one unit, expert 0, weight 1)
//   head         final norm and LM head
//
// A pass over T tokens of one sequence keeps all of its state in a Pass, so it
// can stop after any unit and resume later with nothing recomputed. Experts of
// a layer run in ascending index order, so results are bit-identical however
// the units are interleaved with other passes.
#pragma once

#include "engine/model/checkpoint.h"
#include "engine/model/model_desc.h"

#include <cstdint>
#include <span>
#include <vector>

namespace qllm::cpu {

// One sequence's K and V, contiguous: [layer][position][kv_dim].
struct KvCache {
  int max_len = 0;
  int len = 0;  // positions written
  int kv_dim = 0;
  std::vector<float> k, v;
  float* k_at(int layer, int pos) { return k.data() + (int64_t(layer) * max_len + pos) * kv_dim; }
  float* v_at(int layer, int pos) { return v.data() + (int64_t(layer) * max_len + pos) * kv_dim; }
};

// State of one forward pass between units.
struct Pass {
  int T = 0;               // tokens in this pass
  int start_pos = 0;       // position of tokens[0]
  std::vector<int32_t> tokens;
  std::vector<float> x;    // [T, H] residual stream
  std::vector<float> h;    // [T, H] post-attention norm output (expert input)
  std::vector<int> topk_ids;      // [T, k] of the last attn unit
  std::vector<float> topk_w;      // [T, k]
  std::vector<std::vector<int>> expert_tokens;     // per expert: token rows, ascending
  std::vector<std::vector<float>> expert_weights;  // per expert: routing weight per row
  std::vector<float> logits;      // [rows, V] after head
};

class ReferenceModel {
 public:
  // Copies every weight to fp32. Throws qllm::Error when the checkpoint's
  // weights cannot be read.
  explicit ReferenceModel(const Checkpoint& ck);

  const ModelDesc& desc() const { return desc_; }

  KvCache new_cache(int max_len) const;

  // Starts a pass over `tokens` at cache.len; reserves their KV positions.
  Pass begin(KvCache& cache, std::span<const int32_t> tokens) const;
  void attn_unit(Pass& p, KvCache& cache, int layer) const;
  // Experts that received tokens in the last attn unit of `layer`, ascending.
  std::vector<int> active_experts(const Pass& p) const;
  void expert_unit(Pass& p, int layer, int expert) const;
  // Logits for every token (all_rows) or only the last one.
  void head_unit(Pass& p, bool all_rows) const;

  // The whole pass, unit by unit. Returns logits [rows, vocab].
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
  ModelDesc desc_;
  std::vector<float> embed_, final_norm_, lm_head_;  // lm_head_ empty when tied
  std::vector<Layer> layers_;
};

}  // namespace qllm::cpu
