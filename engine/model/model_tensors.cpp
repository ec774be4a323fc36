// The tensors of a model and what they cost: specs, parameter counts, bytes.
#include "engine/model/model_desc.h"

#include <fmt/format.h>

namespace qllm {
namespace {

int64_t sz(int v) { return static_cast<int64_t>(v); }

}  // namespace

std::vector<TensorSpec> ModelDesc::tensor_specs(ExpertLayout layout) const {
  std::vector<TensorSpec> out;
  auto add = [&](TensorRole role, int layer, int expert, std::vector<int64_t> shape) {
    TensorSpec s;
    s.name = names.name(role, layer, expert, layout);
    s.accepted = names.accepted(role, layer, expert, layout);
    s.key = names.name(role, layer, expert, ExpertLayout::PerExpert);
    s.role = role;
    s.layer = layer;
    s.expert = expert;
    s.shape = std::move(shape);
    out.push_back(std::move(s));
  };
  const int64_t H = sz(hidden), V = sz(vocab), I = sz(expert_ffn), D = sz(dense_ffn);
  const int64_t E = sz(num_experts);
  add(TensorRole::Embed, -1, -1, {V, H});
  for (int l = 0; l < layers; ++l) {
    add(TensorRole::InputNorm, l, -1, {H});
    add(TensorRole::QProj, l, -1, {sz(q_dim()), H});
    add(TensorRole::KProj, l, -1, {sz(kv_dim()), H});
    add(TensorRole::VProj, l, -1, {sz(kv_dim()), H});
    add(TensorRole::OProj, l, -1, {H, sz(q_dim())});
    if (qk_norm == QkNorm::PerHead) {
      add(TensorRole::QNorm, l, -1, {sz(head_dim)});
      add(TensorRole::KNorm, l, -1, {sz(head_dim)});
    } else if (qk_norm == QkNorm::FullWidth) {
      add(TensorRole::QNorm, l, -1, {sz(q_dim())});
      add(TensorRole::KNorm, l, -1, {sz(kv_dim())});
    }
    add(TensorRole::PostAttnNorm, l, -1, {H});
    if (!is_moe_layer(l)) {
      add(TensorRole::DenseGate, l, -1, {D, H});
      add(TensorRole::DenseUp, l, -1, {D, H});
      add(TensorRole::DenseDown, l, -1, {H, D});
      continue;
    }
    add(TensorRole::Router, l, -1, {E, H});
    if (layout == ExpertLayout::Fused) {
      add(TensorRole::FusedGateUp, l, -1, {E, 2 * I, H});
      add(TensorRole::FusedDown, l, -1, {E, H, I});
      out[out.size() - 2].key = out[out.size() - 2].name;
      out.back().key = out.back().name;
    } else {
      for (int e = 0; e < num_experts; ++e) {
        add(TensorRole::ExpertGate, l, e, {I, H});
        add(TensorRole::ExpertUp, l, e, {I, H});
        add(TensorRole::ExpertDown, l, e, {H, I});
      }
    }
  }
  add(TensorRole::FinalNorm, -1, -1, {H});
  if (!tie_word_embeddings) add(TensorRole::LmHead, -1, -1, {V, H});
  return out;
}

ParamCounts ModelDesc::param_counts() const {
  ParamCounts c;
  const int64_t H = sz(hidden), V = sz(vocab);
  c.embed = V * H;
  c.lm_head = tie_word_embeddings ? 0 : V * H;
  int64_t qk = 0;
  if (qk_norm == QkNorm::PerHead) qk = 2 * sz(head_dim);
  if (qk_norm == QkNorm::FullWidth) qk = sz(q_dim()) + sz(kv_dim());
  c.norms = H + sz(layers) * (2 * H + qk);
  c.attention = sz(layers) * (2 * H * sz(q_dim()) + 2 * H * sz(kv_dim()));
  const int64_t moe = num_moe_layers();
  c.router = moe * sz(num_experts) * H;
  c.experts = moe * sz(num_experts) * 3 * H * sz(expert_ffn);
  c.dense_mlp = (sz(layers) - moe) * 3 * H * sz(dense_ffn);
  return c;
}

int64_t ModelDesc::active_param_count() const {
  const int64_t unused = sz(num_moe_layers()) * sz(num_experts - top_k) * 3 * sz(hidden) * sz(expert_ffn);
  return param_count() - unused;
}

ParamCounts ModelDesc::param_bytes(DType t) const {
  ParamCounts c = param_counts();
  const auto es = static_cast<int64_t>(dtype_size(t));
  for (int64_t* v : {&c.embed, &c.lm_head, &c.norms, &c.attention, &c.router, &c.experts, &c.dense_mlp})
    *v *= es;
  return c;
}

DecodeTraffic ModelDesc::decode_bytes_per_token(DType t) const {
  const ParamCounts c = param_counts();
  const auto es = static_cast<int64_t>(dtype_size(t));
  const int64_t moe = num_moe_layers();
  DecodeTraffic d;
  d.embed_row = sz(hidden) * es;
  d.attention = c.attention * es;
  d.norms = c.norms * es;
  d.router = c.router * es;
  d.experts = moe * sz(top_k) * 3 * sz(hidden) * sz(expert_ffn) * es;
  d.dense_mlp = c.dense_mlp * es;
  d.lm_head = sz(vocab) * sz(hidden) * es;  // the embedding table itself when tied
  return d;
}

int64_t ModelDesc::kv_bytes_per_token(DType t) const {
  return 2 * sz(layers) * sz(kv_dim()) * static_cast<int64_t>(dtype_size(t));
}

std::string ModelDesc::summary() const {
  std::string s = fmt::format(
      "{} ({}): {} layers ({} MoE), hidden {}, {} heads / {} kv heads x head_dim {}, vocab {}, "
      "{} experts top-{} (width {}{}), QK norm {}, rope_theta {}, rms_eps {}",
      architecture, model_type, layers, num_moe_layers(), hidden, heads, kv_heads, head_dim, vocab,
      num_experts, top_k, expert_ffn, norm_topk_prob ? ", renormalised" : "",
      qk_norm_name(qk_norm), rope_theta, rms_eps);
  if (dense_ffn > 0) s += fmt::format(", dense MLP width {}", dense_ffn);
  if (clip_qkv) s += fmt::format(", clip_qkv {}", *clip_qkv);
  if (sliding_window) s += fmt::format(", sliding window {}", *sliding_window);
  if (tie_word_embeddings) s += ", tied embeddings";
  s += fmt::format("; {} parameters ({} active per token)", param_count(), active_param_count());
  return s;
}

}  // namespace qllm
