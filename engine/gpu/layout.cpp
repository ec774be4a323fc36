#include "engine/gpu/layout.h"

#include "engine/common/error.h"
#include "kernels/attention_decode.h"
#include "kernels/gemm.h"
#include "kernels/sampling.h"

#include <algorithm>

namespace qllm::gpu {
namespace {

// Hands out aligned regions one after the other.
class Allocator {
 public:
  explicit Allocator(uint64_t start = 0) : next_(start) {}
  Region take(uint64_t bytes) {
    Region r{align_up(next_), bytes};
    next_ = r.end();
    return r;
  }
  uint64_t end() const { return align_up(next_); }

 private:
  uint64_t next_;
};

uint64_t u(int64_t v) { return static_cast<uint64_t>(v); }

}  // namespace

WeightLayout plan_weight_layout(const ModelDesc& d, DType dtype) {
  QLLM_CHECK_MSG(is_weight_dtype(dtype), "weights on the GPU are BF16, F16 or F32, not {}", dtype_name(dtype));
  WeightLayout w;
  w.dtype = dtype;
  w.elem = dtype_size(dtype);
  w.tied = d.tie_word_embeddings;
  const int64_t H = d.hidden, V = d.vocab, qd = d.q_dim(), kvd = d.kv_dim();
  Allocator a;
  // One matrix: its pieces (rows of separate checkpoint tensors) back to back.
  auto matrix = [&](std::initializer_list<WeightPiece> parts) {
    int64_t numel = 0;
    for (const auto& p : parts) numel += p.numel();
    const Region r = a.take(u(numel) * w.elem);
    uint64_t at = r.offset;
    for (WeightPiece p : parts) {
      p.offset = at;
      at += u(p.numel()) * w.elem;
      w.pieces.push_back(p);
    }
    return r.offset;
  };
  auto one = [&](TensorRole role, int layer, int64_t rows, int64_t cols, int expert = -1) {
    return matrix({WeightPiece{role, layer, expert, rows, cols, 0}});
  };

  w.embed = one(TensorRole::Embed, -1, V, H);
  w.final_norm = one(TensorRole::FinalNorm, -1, 1, H);
  w.lm_head = w.tied ? w.embed : one(TensorRole::LmHead, -1, V, H);
  w.global_bytes = a.end();

  for (int l = 0; l < d.layers; ++l) {
    LayerWeightOffsets L;
    L.begin = a.end();
    L.input_norm = one(TensorRole::InputNorm, l, 1, H);
    L.post_norm = one(TensorRole::PostAttnNorm, l, 1, H);
    L.qkv = matrix({WeightPiece{TensorRole::QProj, l, -1, qd, H, 0}, WeightPiece{TensorRole::KProj, l, -1, kvd, H, 0},
                    WeightPiece{TensorRole::VProj, l, -1, kvd, H, 0}});
    L.o = one(TensorRole::OProj, l, H, qd);
    if (d.qk_norm != QkNorm::None) {
      const bool per_head = d.qk_norm == QkNorm::PerHead;
      L.qk_norm = true;
      L.q_norm = one(TensorRole::QNorm, l, 1, per_head ? d.head_dim : qd);
      L.k_norm = one(TensorRole::KNorm, l, 1, per_head ? d.head_dim : kvd);
    }
    L.moe = d.is_moe_layer(l);
    if (L.moe) {
      L.router = one(TensorRole::Router, l, d.num_experts, H);
      L.mlps = d.num_experts;
      L.ffn = d.expert_ffn;
      for (int e = 0; e < d.num_experts; ++e) {
        L.gate_up.push_back(matrix({WeightPiece{TensorRole::ExpertGate, l, e, L.ffn, H, 0},
                                    WeightPiece{TensorRole::ExpertUp, l, e, L.ffn, H, 0}}));
        L.down.push_back(one(TensorRole::ExpertDown, l, H, L.ffn, e));
      }
    } else {
      L.mlps = 1;
      L.ffn = d.dense_ffn;
      L.gate_up.push_back(matrix({WeightPiece{TensorRole::DenseGate, l, -1, L.ffn, H, 0},
                                  WeightPiece{TensorRole::DenseUp, l, -1, L.ffn, H, 0}}));
      L.down.push_back(one(TensorRole::DenseDown, l, H, L.ffn));
    }
    L.end = a.end();
    w.layers.push_back(std::move(L));
  }
  w.total_bytes = a.end();
  return w;
}

StepLayout plan_step_layout(int rows_cap, int seqs_cap, int max_blocks_per_seq) {
  QLLM_CHECK_MSG(rows_cap >= 1 && seqs_cap >= 1 && max_blocks_per_seq >= 1,
                 "step layout: rows_cap {}, seqs_cap {}, max_blocks_per_seq {}", rows_cap, seqs_cap,
                 max_blocks_per_seq);
  StepLayout s;
  s.rows_cap = rows_cap;
  s.seqs_cap = seqs_cap;
  s.max_blocks_per_seq = max_blocks_per_seq;
  const uint64_t T = u(rows_cap), S = u(seqs_cap);
  Allocator a;
  s.rows = a.take(4);
  s.logit_count = a.take(4);
  s.zero = a.take(4);
  s.tokens = a.take(T * 4);
  s.pos = a.take(T * 4);
  s.seq = a.take(T * 4);
  s.kv_slot = a.take(T * 8);
  s.tables = a.take(S * u(max_blocks_per_seq) * 4);
  s.logit_rows = a.take(S * 4);
  s.sampling = a.take(S * sizeof(cuda::SamplingRow));
  s.bytes = a.end();
  return s;
}

SlotLayout plan_slot_layout(const ModelDesc& d, const SlotShape& sh, uint64_t gemm_workspace_bytes) {
  QLLM_CHECK_MSG(sh.max_tokens >= 1 && sh.max_tokens <= cuda::kMaxGemmBucket,
                 "slot shape: max_tokens {} outside [1, {}]", sh.max_tokens, cuda::kMaxGemmBucket);
  QLLM_CHECK_MSG(sh.max_seqs >= 1 && sh.max_seqs <= sh.max_tokens, "slot shape: max_seqs {} (max_tokens {})",
                 sh.max_seqs, sh.max_tokens);
  QLLM_CHECK_MSG(sh.block_size >= 1 && sh.max_seq_len >= 1 && sh.sampling_blocks >= 1,
                 "slot shape: block_size {}, max_seq_len {}, sampling_blocks {}", sh.block_size, sh.max_seq_len,
                 sh.sampling_blocks);
  SlotLayout s;
  s.shape = sh;
  s.rows_alloc = cuda::bucket_for(sh.max_tokens);
  s.logit_alloc = cuda::bucket_for(sh.max_seqs);
  s.qkv_width = d.q_dim() + 2 * d.kv_dim();
  s.ffn_max = std::max(d.expert_ffn, d.dense_ffn);
  s.experts = std::max(d.num_experts, 1);
  s.top_k = std::max(d.top_k, 1);
  const uint64_t R = u(s.rows_alloc), Rl = u(s.logit_alloc), H = u(d.hidden), E = u(s.experts),
                 K = u(s.top_k), Fm = u(s.ffn_max);

  uint64_t attn_ws = 0;
  for (int b : cuda::gemm_buckets(sh.max_tokens)) {
    const int rows = std::min(b, sh.max_tokens);
    const int splits = cuda::attention_decode_splits(rows, d.heads, d.kv_heads, sh.max_seq_len, sh.sm_count);
    s.decode_splits.push_back(splits);
    attn_ws = std::max<uint64_t>(attn_ws, cuda::attention_decode_workspace_bytes(rows, d.heads, d.head_dim, splits));
  }

  Allocator a;
  s.step = plan_step_layout(sh.max_tokens, sh.max_seqs, sh.max_blocks_per_seq());
  a.take(s.step.bytes);
  s.x = a.take(R * H * 4);
  s.normed = a.take(R * H * 2);
  s.qkv = a.take(R * u(s.qkv_width) * 2);
  s.attn_out = a.take(R * u(d.q_dim()) * 2);
  s.router_logits = a.take(R * E * 4);
  s.topk_ids = a.take(R * K * 4);
  s.topk_w = a.take(R * K * 4);
  s.counts = a.take(E * 4);
  s.offsets = a.take((E + 1) * 4);
  s.list_rows = a.take(R * K * 4);
  s.list_w = a.take(R * K * 4);
  s.expert_in = a.take(R * H * 2);
  s.gate_up = a.take(R * 2 * Fm * 2);
  s.act = a.take(R * Fm * 2);
  s.down = a.take(R * H * 4);
  s.head_in = a.take(Rl * H * 2);
  s.logits = a.take(Rl * u(d.vocab) * 4);
  s.tokens_out = a.take(u(sh.max_seqs) * 4);
  s.error = a.take(4);
  s.attn_ws = a.take(attn_ws);
  s.sampling_ws = a.take(cuda::sampling_workspace_bytes(d.vocab, std::min(sh.sampling_blocks, sh.max_seqs)));
  s.gemm_ws = a.take(gemm_workspace_bytes);
  s.bytes = a.end();
  return s;
}

std::vector<std::pair<std::string_view, Region>> SlotLayout::regions() const {
  return {{"step", {0, step.bytes}},
          {"x", x},
          {"normed", normed},
          {"qkv", qkv},
          {"attn_out", attn_out},
          {"router_logits", router_logits},
          {"topk_ids", topk_ids},
          {"topk_w", topk_w},
          {"counts", counts},
          {"offsets", offsets},
          {"list_rows", list_rows},
          {"list_w", list_w},
          {"expert_in", expert_in},
          {"gate_up", gate_up},
          {"act", act},
          {"down", down},
          {"head_in", head_in},
          {"logits", logits},
          {"tokens_out", tokens_out},
          {"error", error},
          {"attn_ws", attn_ws},
          {"sampling_ws", sampling_ws},
          {"gemm_ws", gemm_ws}};
}

KvLayout plan_kv_layout(const ModelDesc& d, int64_t num_blocks, int block_size, DType dtype) {
  QLLM_CHECK_MSG(num_blocks >= 1 && block_size >= 1, "KV layout: {} blocks of {}", num_blocks, block_size);
  KvLayout k;
  k.layers = d.layers;
  k.num_blocks = num_blocks;
  k.block_size = block_size;
  k.kv_dim = d.kv_dim();
  k.elem = dtype_size(dtype);
  return k;
}

}  // namespace qllm::gpu
