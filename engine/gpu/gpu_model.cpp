#include "engine/gpu/gpu_model.h"

#include "engine/common/error.h"
#include "kernels/attention_decode.h"
#include "kernels/attention_prefill.h"
#include "kernels/clip.h"
#include "kernels/cuda_check.h"
#include "kernels/embedding.h"
#include "kernels/expert_lists.h"
#include "kernels/gather.h"
#include "kernels/rms_norm.h"
#include "kernels/rope_kv_write.h"
#include "kernels/router.h"
#include "kernels/sampling.h"
#include "kernels/scatter_add.h"
#include "kernels/silu_mul.h"
#include "profiling/nvtx.h"

#include <algorithm>

namespace qllm::gpu {
namespace {

using cuda::GemmOut;

// What the kernels need of the model's shape, as a user-facing error.
void check_supported(const ModelDesc& d) {
  auto need = [&](bool ok, const char* what) {
    if (!ok) fail("{}: the GPU kernels need {} ({})", d.architecture, what, d.summary());
  };
  need(d.hidden % 8 == 0, "hidden_size to be a multiple of 8");
  need(d.head_dim % 8 == 0 && d.head_dim <= 256, "head_dim to be a multiple of 8, at most 256");
  need(d.heads % d.kv_heads == 0, "num_attention_heads to be a multiple of num_key_value_heads");
  need(d.expert_ffn % 8 == 0 && d.dense_ffn % 8 == 0, "the MLP widths to be multiples of 8");
  need(d.num_experts >= 1 && d.num_experts <= cuda::kRouterMaxExperts, "1 to 256 experts");
  need(d.top_k >= 1 && d.top_k <= std::min(d.num_experts, cuda::kRouterMaxTopK), "top-k between 1 and min(E, 32)");
}

}  // namespace

GpuModel::GpuModel(const DeviceWeights& w, const GpuModelConfig& cfg) : w_(w), cfg_(cfg) {
  prof::Range range("gpu/model_setup");
  const ModelDesc& d = w_.desc();
  check_supported(d);
  if (cfg_.slots < 1) fail("the GPU model needs at least one slot, not {}", cfg_.slots);
  if (cfg_.kv_blocks < 1) fail("the GPU model needs KV-cache blocks, not {}", cfg_.kv_blocks);
  if (cfg_.slot.max_tokens < 1 || cfg_.slot.max_tokens > cuda::kMaxGemmBucket)
    fail("scheduler.max_tokens_per_step {} is outside [1, {}]", cfg_.slot.max_tokens, cuda::kMaxGemmBucket);
  if (cfg_.slot.max_seqs < 1 || cfg_.slot.max_seqs > cfg_.slot.max_tokens)
    fail("scheduler.max_seqs_per_step {} is outside [1, max_tokens_per_step {}]", cfg_.slot.max_seqs,
         cfg_.slot.max_tokens);
  if (cfg_.slot.sm_count <= 0) {
    int dev = 0;
    QLLM_CUDA_CHECK(cudaGetDevice(&dev));
    QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&cfg_.slot.sm_count, cudaDevAttrMultiProcessorCount, dev));
  }
  slot_layout_ = plan_slot_layout(d, cfg_.slot, cfg_.gemm_workspace_bytes);
  gemm_ = std::make_unique<cuda::GemmContext>(cfg_.gemm_workspace_bytes);
  kv_ = std::make_unique<DeviceKv>(plan_kv_layout(d, cfg_.kv_blocks, cfg_.slot.block_size));
  for (int s = 0; s < cfg_.slots; ++s) slots_.push_back(std::make_unique<SlotBuffers>(slot_layout_));

  bool any_moe = false, any_dense = false;
  for (int l = 0; l < d.layers; ++l) (d.is_moe_layer(l) ? any_moe : any_dense) = true;
  const int H = d.hidden, qd = d.q_dim(), W = slot_layout_.qkv_width;
  auto plan = [&](int m, int n, int k, GemmOut out, bool acc = false) {
    return &gemm_->plan({.m = m, .n = n, .k = k, .out = out, .accumulate = acc});
  };
  for (int b : cuda::gemm_buckets(cfg_.slot.max_tokens)) {
    plans_.qkv.push_back(plan(b, W, H, GemmOut::BF16));
    plans_.o.push_back(plan(b, H, qd, GemmOut::F32, true));
    if (any_moe) {
      plans_.router.push_back(plan(b, d.num_experts, H, GemmOut::F32));
      plans_.gate_up.push_back(plan(b, 2 * d.expert_ffn, H, GemmOut::BF16));
      plans_.down.push_back(plan(b, H, d.expert_ffn, GemmOut::F32));
    }
    if (any_dense) {
      plans_.dense_gate_up.push_back(plan(b, 2 * d.dense_ffn, H, GemmOut::BF16));
      plans_.dense_down.push_back(plan(b, H, d.dense_ffn, GemmOut::F32, true));
    }
  }
  for (int b : cuda::gemm_buckets(cfg_.slot.max_seqs)) plans_.head.push_back(plan(b, d.vocab, H, GemmOut::F32));
}

GpuModel::~GpuModel() = default;

size_t GpuModel::num_gemm_plans() const { return gemm_->num_plans(); }

int GpuModel::bucket_index(int bucket, int largest, const char* unit) const {
  const int i = cuda::bucket_index(bucket);
  QLLM_CHECK_MSG(bucket >= 1 && bucket <= largest && cuda::bucket_for(bucket) == bucket,
                 "{}: bucket {} is not a power of two in [1, {}]", unit, bucket, largest);
  return i;
}

cuda::GemmWorkspace GpuModel::workspace(int slot) const {
  const SlotBuffers& s = *slots_.at(size_t(slot));
  return {s.ptr().gemm_ws, s.layout().gemm_ws.bytes};
}

StepInfo GpuModel::set_step(int slot, std::span<const cpu::SeqChunk> chunks,
                            std::span<const cuda::SamplingRow> sampling, cudaStream_t stream, void* dst) {
  return slots_.at(size_t(slot))->set_step(kv_->geometry(), desc().vocab, chunks, sampling, stream, dst);
}

void GpuModel::enqueue_begin(int slot, cudaStream_t stream) const {
  const SlotPointers& p = slots_.at(size_t(slot))->ptr();
  const ModelDesc& d = desc();
  cuda::embedding(p.tokens, w_.embed(), d.vocab, d.hidden, p.x, cfg_.slot.max_tokens, p.rows, p.error, stream);
}

void GpuModel::enqueue_attn(int slot, int layer, cudaStream_t stream, int bucket, AttnKernel kernel) const {
  const ModelDesc& d = desc();
  QLLM_CHECK_MSG(layer >= 0 && layer < d.layers, "attn unit: layer {} of {}", layer, d.layers);
  const SlotPointers& p = slots_.at(size_t(slot))->ptr();
  const LayerWeights& L = w_.layer(layer);
  const int b = bucket > 0 ? bucket : max_bucket();
  const int bi = bucket_index(b, max_bucket(), "attn unit");
  const int rows = std::min(b, cfg_.slot.max_tokens);  // kernels' row capacity
  const cuda::GemmWorkspace ws = workspace(slot);
  const int H = d.hidden, hd = d.head_dim, nh = d.heads, nkv = d.kv_heads, qd = d.q_dim(), kvd = d.kv_dim();
  const int W = slot_layout_.qkv_width;
  const float eps = d.rms_eps;

  // normed [b, H] = rms(x) · w_in;  qkv [b, qd + 2 kvd] = normed · Wqkvᵀ
  cuda::rms_norm(p.x, L.input_norm, p.normed, rows, H, eps, p.rows, stream);
  plans_.qkv[size_t(bi)]->run(p.normed, L.qkv, p.qkv, ws, stream);
  bf16* q = p.qkv;
  bf16* k = q + qd;
  bf16* v = k + kvd;
  switch (d.qk_norm) {
    case QkNorm::None: break;
    case QkNorm::PerHead:
      cuda::rms_norm_heads_inplace(q, W, L.q_norm, rows, nh, hd, eps, p.rows, stream);
      cuda::rms_norm_heads_inplace(k, W, L.k_norm, rows, nkv, hd, eps, p.rows, stream);
      break;
    case QkNorm::FullWidth:
      cuda::rms_norm_inplace(q, W, L.q_norm, rows, qd, eps, p.rows, stream);
      cuda::rms_norm_inplace(k, W, L.k_norm, rows, kvd, eps, p.rows, stream);
      break;
  }
  if (d.clip_qkv) cuda::clip_inplace(p.qkv, W, W, *d.clip_qkv, rows, p.rows, stream);

  // RoPE on q (in place) and k; k and v into the cache at kv_slot[t].
  const KvLayout& kvl = kv_->layout();
  cuda::rope_kv_write(q, W, k, W, v, W, {nh, nkv, hd, d.rope_theta}, p.pos, p.kv_slot, kv_->k(layer),
                      kv_->v(layer), kvl.slots(), rows, p.rows, p.error, stream);

  // attn_out [b, qd]: each row over its own sequence's blocks.
  cuda::PagedAttention a;
  a.q = q;
  a.ldq = W;
  a.out = p.attn_out;
  a.ldo = qd;
  a.k_cache = kv_->k(layer);
  a.v_cache = kv_->v(layer);
  a.cache_slots = kvl.slots();
  a.block_size = kvl.block_size;
  a.d_tables = p.tables;
  a.seqs_cap = cfg_.slot.max_seqs;
  a.max_blocks_per_seq = cfg_.slot.max_blocks_per_seq();
  a.d_rows = p.rows;
  a.d_pos = p.pos;
  a.d_seq = p.seq;
  a.rows_cap = rows;
  a.heads = nh;
  a.kv_heads = nkv;
  a.head_dim = hd;
  a.window = d.sliding_window.value_or(0);
  a.d_error = p.error;
  if (kernel == AttnKernel::Prefill) {
    cuda::attention_prefill(a, stream);
  } else {
    cuda::attention_decode(a, slot_layout_.decode_splits[size_t(bi)], p.attn_ws, slot_layout_.attn_ws.bytes,
                           stream);
  }

  // x [b, H] += attn_out · Woᵀ;  normed = rms(x) · w_post (the experts' input)
  plans_.o[size_t(bi)]->run(p.attn_out, L.o, p.x, ws, stream);
  cuda::rms_norm(p.x, L.post_norm, p.normed, rows, H, eps, p.rows, stream);

  if (L.router) {
    // router_logits [b, E] = normed · Wrᵀ; top-k; per-expert lists
    const int E = d.num_experts, K = d.top_k;
    plans_.router[size_t(bi)]->run(p.normed, L.router, p.router_logits, ws, stream);
    cuda::router_topk(p.router_logits, E, K, d.norm_topk_prob, p.topk_ids, p.topk_w, rows, p.rows, stream);
    cuda::expert_lists(p.topk_ids, p.topk_w, K, E, rows, p.rows, p.counts, p.offsets, p.list_rows, p.list_w,
                       p.error, stream);
  } else {
    // A dense layer is unit 0 over every row: counts = {rows, 0, ...}, so the
    // scheduler reads its bucket from counts as for an expert.
    QLLM_CUDA_CHECK(cudaMemsetAsync(p.counts, 0, size_t(slot_layout_.experts) * sizeof(int32_t), stream));
    QLLM_CUDA_CHECK(cudaMemcpyAsync(p.counts, p.rows, sizeof(int32_t), cudaMemcpyDeviceToDevice, stream));
  }
}

void GpuModel::enqueue_expert(int slot, int layer, int expert, int bucket, cudaStream_t stream) const {
  const ModelDesc& d = desc();
  QLLM_CHECK_MSG(layer >= 0 && layer < d.layers, "expert unit: layer {} of {}", layer, d.layers);
  const LayerWeights& L = w_.layer(layer);
  QLLM_CHECK_MSG(expert >= 0 && expert < L.mlps, "expert unit: expert {} of layer {} ({} units)", expert, layer,
                 L.mlps);
  const int bi = bucket_index(bucket, max_bucket(), "expert unit");
  const SlotPointers& p = slots_.at(size_t(slot))->ptr();
  const cuda::GemmWorkspace ws = workspace(slot);
  const int H = d.hidden, F = L.ffn;
  const size_t e = size_t(expert);

  if (L.router) {
    // expert_in [b, H] = normed[rows of e]; gate_up [b, 2F]; act [b, F];
    // down [b, H] fp32; x[row] += w · down[r]
    cuda::gather_rows(p.normed, H, p.list_rows, p.offsets, p.counts, expert, p.expert_in, bucket, stream);
    plans_.gate_up[size_t(bi)]->run(p.expert_in, L.gate_up[e], p.gate_up, ws, stream);
    cuda::silu_mul(p.gate_up, F, p.act, bucket, p.counts + expert, stream);
    plans_.down[size_t(bi)]->run(p.act, L.down[e], p.down, ws, stream);
    cuda::scatter_add(p.down, H, p.list_rows, p.list_w, p.offsets, p.counts, expert, p.x, bucket, stream);
  } else {
    // Dense: gate_up [b, 2D] = normed · Wguᵀ; act [b, D]; x [b, H] += act · Wdᵀ (weight 1)
    plans_.dense_gate_up[size_t(bi)]->run(p.normed, L.gate_up[0], p.gate_up, ws, stream);
    cuda::silu_mul(p.gate_up, F, p.act, std::min(bucket, cfg_.slot.max_tokens), p.rows, stream);
    plans_.dense_down[size_t(bi)]->run(p.act, L.down[0], p.x, ws, stream);
  }
}

void GpuModel::enqueue_head(int slot, cudaStream_t stream, int bucket) const {
  const ModelDesc& d = desc();
  const SlotPointers& p = slots_.at(size_t(slot))->ptr();
  const int b = bucket > 0 ? bucket : max_head_bucket();
  const int bi = bucket_index(b, max_head_bucket(), "head unit");
  const int rows = std::min(b, cfg_.slot.max_seqs);
  // normed [T, H] = rms(x) · w_final; head_in [b, H] = normed[logit_rows];
  // logits [b, V] = head_in · LMᵀ; tokens_out [S] = sample(logits)
  cuda::rms_norm(p.x, w_.final_norm(), p.normed, cfg_.slot.max_tokens, d.hidden, d.rms_eps, p.rows, stream);
  cuda::gather_rows(p.normed, d.hidden, p.logit_rows, p.zero, p.logit_count, 0, p.head_in, b, stream);
  plans_.head[size_t(bi)]->run(p.head_in, w_.lm_head(), p.logits, workspace(slot), stream);
  const int blocks = std::min(cfg_.slot.sampling_blocks, cfg_.slot.max_seqs);
  cuda::sample_tokens(p.logits, d.vocab, d.vocab, p.sampling, p.logit_count, rows, p.tokens_out, p.sampling_ws,
                      slot_layout_.sampling_ws.bytes, blocks, stream);
}

}  // namespace qllm::gpu
