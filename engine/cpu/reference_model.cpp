#include "engine/cpu/reference_model.h"

#include "engine/common/error.h"
#include "engine/cpu/attention.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qllm::cpu {
namespace {

std::vector<float> to_f32(const MatrixView& m) {
  std::vector<float> out(size_t(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) m.row_to_f32(r, out.data() + r * m.cols);
  return out;
}

}  // namespace

ReferenceModel::ReferenceModel(const Checkpoint& ck) : desc_(ck.desc()) {
  const auto& d = desc_;
  embed_ = to_f32(ck.embed());
  final_norm_ = to_f32(ck.final_norm());
  if (!ck.lm_head_tied()) lm_head_ = to_f32(ck.lm_head());
  layers_.resize(size_t(d.layers));
  for (int l = 0; l < d.layers; ++l) {
    auto& L = layers_[size_t(l)];
    L.input_norm = to_f32(ck.weight(TensorRole::InputNorm, l));
    L.post_norm = to_f32(ck.weight(TensorRole::PostAttnNorm, l));
    L.q = to_f32(ck.weight(TensorRole::QProj, l));
    L.k = to_f32(ck.weight(TensorRole::KProj, l));
    L.v = to_f32(ck.weight(TensorRole::VProj, l));
    L.o = to_f32(ck.weight(TensorRole::OProj, l));
    if (d.qk_norm != QkNorm::None) {
      L.q_norm = to_f32(ck.weight(TensorRole::QNorm, l));
      L.k_norm = to_f32(ck.weight(TensorRole::KNorm, l));
    }
    if (d.is_moe_layer(l)) {
      L.router = to_f32(ck.weight(TensorRole::Router, l));
      for (int e = 0; e < d.num_experts; ++e) {
        const auto ev = ck.expert(l, e);
        L.mlps.push_back({d.expert_ffn, to_f32(ev.gate), to_f32(ev.up), to_f32(ev.down)});
      }
    } else {
      L.mlps.push_back({d.dense_ffn, to_f32(ck.weight(TensorRole::DenseGate, l)),
                        to_f32(ck.weight(TensorRole::DenseUp, l)),
                        to_f32(ck.weight(TensorRole::DenseDown, l))});
    }
  }
}

PagedKv::PagedKv(int layers_, int num_blocks_, int block_size_, int kv_dim_)
    : layers(layers_), num_blocks(num_blocks_), block_size(block_size_), kv_dim(kv_dim_) {
  const size_t n = size_t(layers) * size_t(num_blocks) * size_t(block_size) * size_t(kv_dim);
  k.assign(n, 0.0f);
  v.assign(n, 0.0f);
}

PagedKv ReferenceModel::new_paged_kv(int num_blocks, int block_size) const {
  return PagedKv(desc_.layers, num_blocks, block_size, desc_.kv_dim());
}

KvCache ReferenceModel::new_cache(int max_len) const {
  KvCache c;
  c.kv = new_paged_kv(1, max_len);
  c.max_len = max_len;
  return c;
}

Pass ReferenceModel::begin(const PagedKv& kv, std::span<const SeqChunk> chunks) const {
  const int H = desc_.hidden;
  Pass p;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const auto& ch = chunks[c];
    const int end = ch.start_pos + int(ch.tokens.size());
    if (ch.start_pos < 0 || int64_t(ch.block_table.size()) * kv.block_size < end)
      fail("sequence {} of the pass: its block table ({} blocks of {}) does not cover positions "
           "up to {}", c, ch.block_table.size(), kv.block_size, end);
    for (int32_t b : ch.block_table)
      if (b < 0 || b >= kv.num_blocks)
        fail("sequence {} of the pass: block {} is outside the KV cache's {} blocks", c, b, kv.num_blocks);
    p.tables.emplace_back(ch.block_table.begin(), ch.block_table.end());
    for (size_t i = 0; i < ch.tokens.size(); ++i) {
      const int32_t id = ch.tokens[i];
      if (id < 0 || id >= desc_.vocab)
        fail("token id {} is outside the vocabulary [0, {})", id, desc_.vocab);
      const int pos = ch.start_pos + int(i);
      p.tokens.push_back(id);
      p.pos.push_back(pos);
      p.seq.push_back(int(c));
      p.slot.push_back(int64_t(ch.block_table[size_t(pos / kv.block_size)]) * kv.block_size +
                       pos % kv.block_size);
    }
    if (ch.logits && !ch.tokens.empty()) p.logit_rows.push_back(int(p.tokens.size()) - 1);
  }
  p.T = int(p.tokens.size());
  if (p.T == 0) fail("a forward pass needs at least one token");
  p.x.resize(size_t(p.T) * size_t(H));
  for (int t = 0; t < p.T; ++t)
    std::copy_n(embed_.data() + int64_t(p.tokens[size_t(t)]) * H, H, p.x.data() + int64_t(t) * H);
  p.h.resize(p.x.size());
  return p;
}

Pass ReferenceModel::begin(KvCache& cache, std::span<const int32_t> tokens, bool all_rows) const {
  if (cache.len + int64_t(tokens.size()) > cache.max_len)
    fail("sequence of {} tokens exceeds the KV cache's {} positions", cache.len + tokens.size(),
         cache.max_len);
  static const int32_t kOnlyBlock = 0;
  SeqChunk ch{tokens, cache.len, std::span(&kOnlyBlock, 1), true};
  Pass p = begin(cache.kv, std::span(&ch, 1));
  if (all_rows) {
    p.logit_rows.resize(size_t(p.T));
    std::iota(p.logit_rows.begin(), p.logit_rows.end(), 0);
  }
  cache.len += int(tokens.size());
  return p;
}

void ReferenceModel::attn_unit(Pass& p, PagedKv& kv, int layer) const {
  const auto& d = desc_;
  const auto& L = layers_[size_t(layer)];
  const int T = p.T, H = d.hidden, hd = d.head_dim, nh = d.heads, nkv = d.kv_heads;
  const int qd = d.q_dim(), kvd = d.kv_dim();
  std::vector<float> xn(size_t(T) * H), q(size_t(T) * qd), k(size_t(T) * kvd), v(size_t(T) * kvd);
  rms_norm(p.x.data(), L.input_norm.data(), xn.data(), T, H, d.rms_eps);
  linear(xn.data(), L.q.data(), q.data(), T, H, qd);
  linear(xn.data(), L.k.data(), k.data(), T, H, kvd);
  linear(xn.data(), L.v.data(), v.data(), T, H, kvd);
  switch (d.qk_norm) {
    case QkNorm::None: break;
    case QkNorm::PerHead:
      rms_norm(q.data(), L.q_norm.data(), q.data(), int64_t(T) * nh, hd, d.rms_eps);
      rms_norm(k.data(), L.k_norm.data(), k.data(), int64_t(T) * nkv, hd, d.rms_eps);
      break;
    case QkNorm::FullWidth:
      rms_norm(q.data(), L.q_norm.data(), q.data(), T, qd, d.rms_eps);
      rms_norm(k.data(), L.k_norm.data(), k.data(), T, kvd, d.rms_eps);
      break;
  }
  if (d.clip_qkv) {
    const float c = *d.clip_qkv;
    for (auto* buf : {&q, &k, &v})
      for (float& f : *buf) f = std::clamp(f, -c, c);
  }
  for (int t = 0; t < T; ++t) {
    const int pos = p.pos[size_t(t)];
    rope(q.data() + int64_t(t) * qd, nh, hd, pos, d.rope_theta);
    rope(k.data() + int64_t(t) * kvd, nkv, hd, pos, d.rope_theta);
    std::copy_n(k.data() + int64_t(t) * kvd, kvd, kv.k_at(layer, p.slot[size_t(t)]));
    std::copy_n(v.data() + int64_t(t) * kvd, kvd, kv.v_at(layer, p.slot[size_t(t)]));
  }
  // Causal GQA attention of each token over its own sequence's blocks.
  std::vector<float> att(size_t(T) * qd, 0.0f);
  paged_attention(q.data(), kv, layer, p.pos, p.seq, p.tables,
                  {nh, nkv, hd, d.sliding_window.value_or(0)}, att.data());
  std::vector<float> o(size_t(T) * H);
  linear(att.data(), L.o.data(), o.data(), T, qd, H);
  for (size_t i = 0; i < o.size(); ++i) p.x[i] += o[i];
  rms_norm(p.x.data(), L.post_norm.data(), p.h.data(), T, H, d.rms_eps);

  // Routing: which tokens each expert (or the dense MLP) processes.
  Routing r;
  if (d.is_moe_layer(layer)) {
    const int E = d.num_experts;
    std::vector<float> logits(size_t(T) * E);
    linear(p.h.data(), L.router.data(), logits.data(), T, H, E);
    r = route(logits.data(), T, E, d.top_k, d.norm_topk_prob);
  } else {
    r = route_dense(T);
  }
  p.topk_ids = std::move(r.topk_ids);
  p.topk_w = std::move(r.topk_w);
  p.expert_tokens = std::move(r.expert_tokens);
  p.expert_weights = std::move(r.expert_weights);
}

std::vector<int> ReferenceModel::active_experts(const Pass& p) const {
  std::vector<int> out;
  for (size_t e = 0; e < p.expert_tokens.size(); ++e)
    if (!p.expert_tokens[e].empty()) out.push_back(int(e));
  return out;
}

void ReferenceModel::expert_unit(Pass& p, int layer, int expert) const {
  const auto& L = layers_[size_t(layer)];
  QLLM_CHECK(expert >= 0 && size_t(expert) < L.mlps.size());
  const auto& m = L.mlps[size_t(expert)];
  const auto& rows = p.expert_tokens[size_t(expert)];
  const auto& ws = p.expert_weights[size_t(expert)];
  const int H = desc_.hidden, n = int(rows.size());
  if (n == 0) return;
  std::vector<float> in(size_t(n) * H), g(size_t(n) * m.ffn), u(size_t(n) * m.ffn), out(size_t(n) * H);
  for (int r = 0; r < n; ++r)
    std::copy_n(p.h.data() + int64_t(rows[size_t(r)]) * H, H, in.data() + int64_t(r) * H);
  linear(in.data(), m.gate.data(), g.data(), n, H, m.ffn);
  linear(in.data(), m.up.data(), u.data(), n, H, m.ffn);
  for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
  linear(g.data(), m.down.data(), out.data(), n, m.ffn, H);
  for (int r = 0; r < n; ++r) {
    float* x = p.x.data() + int64_t(rows[size_t(r)]) * H;
    const float w = ws[size_t(r)];
    for (int i = 0; i < H; ++i) x[i] += w * out[size_t(r) * H + i];
  }
}

void ReferenceModel::head_unit(Pass& p) const {
  const int H = desc_.hidden, V = desc_.vocab;
  const int rows = int(p.logit_rows.size());
  std::vector<float> xr(size_t(rows) * H), xn(size_t(rows) * H);
  for (int r = 0; r < rows; ++r)
    std::copy_n(p.x.data() + int64_t(p.logit_rows[size_t(r)]) * H, H, xr.data() + int64_t(r) * H);
  rms_norm(xr.data(), final_norm_.data(), xn.data(), rows, H, desc_.rms_eps);
  p.logits.resize(size_t(rows) * V);
  const auto& w = lm_head_.empty() ? embed_ : lm_head_;
  linear(xn.data(), w.data(), p.logits.data(), rows, H, V);
}

void ReferenceModel::run_units(Pass& p, PagedKv& kv) const {
  for (int l = 0; l < desc_.layers; ++l) {
    attn_unit(p, kv, l);
    for (int e : active_experts(p)) expert_unit(p, l, e);
  }
  head_unit(p);
}

std::vector<float> ReferenceModel::forward(PagedKv& kv, std::span<const SeqChunk> chunks) const {
  Pass p = begin(kv, chunks);
  run_units(p, kv);
  return std::move(p.logits);
}

std::vector<float> ReferenceModel::forward(KvCache& cache, std::span<const int32_t> tokens,
                                           bool all_rows) const {
  Pass p = begin(cache, tokens, all_rows);
  run_units(p, cache.kv);
  return std::move(p.logits);
}

}  // namespace qllm::cpu
