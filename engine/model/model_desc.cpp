// config.json → ModelDesc: one place that knows each architecture's keys,
// defaults and invariants.
#include "engine/model/model_desc.h"

#include "engine/common/error.h"
#include "engine/model/json_read.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace qllm {
namespace {

// Per-architecture keys and defaults (the defaults transformers applies).
struct ArchKeys {
  std::string_view experts_key;      // the name published configs use
  std::string_view experts_alt_key;  // also accepted (transformers attribute_map)
  std::string_view expert_ffn_key;
  std::string_view dense_ffn_key;    // empty: no dense layers
  bool norm_topk_always;             // Mixtral renormalises unconditionally
  QkNorm qk_norm;
  bool has_clip_qkv;
  bool sliding_needs_flag;           // Qwen3: sliding_window only if use_sliding_window
  bool has_sliding;
  double default_theta;
  double default_eps;
  int64_t default_max_positions;
};

ArchKeys keys_for(Arch a) {
  switch (a) {
    case Arch::Mixtral:
      return {"num_local_experts", "num_experts", "intermediate_size", "", true, QkNorm::None,
              false, false, true, 1e6, 1e-5, 131072};
    case Arch::Qwen3Moe:
      return {"num_experts", "num_local_experts", "moe_intermediate_size", "intermediate_size",
              false, QkNorm::PerHead, false, true, true, 10000.0, 1e-6, 32768};
    case Arch::Olmoe:
      return {"num_experts", "num_local_experts", "intermediate_size", "", false,
              QkNorm::FullWidth, true, false, false, 10000.0, 1e-5, 4096};
  }
  QLLM_CHECK(false);
}

constexpr int64_t kMaxDim = 1 << 20;
constexpr int64_t kMaxVocab = 1 << 26;
constexpr int64_t kMaxTokenId = (1 << 30);

Arch detect_arch(const JsonReader& r, std::string& architecture, std::string& model_type) {
  Arch arch{};
  bool from_class = false;
  if (const auto* a = r.find("architectures")) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string())
      r.fail_key("architectures",
                 fmt::format("expected a non-empty list of class names, found {}", describe_json(*a)));
    architecture = (*a)[0].get<std::string>();
    if (!parse_arch(architecture, arch) || architecture != arch_class_name(arch))
      r.fail_key("architectures",
                 fmt::format("unsupported architecture '{}'; supported: {}", architecture,
                             supported_archs()));
    from_class = true;
  }
  if (auto mt = r.opt_string("model_type")) {
    model_type = *mt;
    Arch m{};
    const bool known = parse_arch(model_type, m) && model_type == arch_name(m);
    if (!from_class) {
      if (!known)
        r.fail_key("model_type", fmt::format("unsupported model type '{}'; supported: {}",
                                             model_type, supported_archs()));
      arch = m;
    } else if (!known || m != arch) {
      r.fail_key("model_type", fmt::format("'{}' does not match architectures[0] '{}' (expected '{}')",
                                           model_type, architecture, arch_name(arch)));
    }
  } else if (!from_class) {
    fail("{}: neither 'architectures' nor 'model_type' names the model; supported: {}",
         r.what(), supported_archs());
  }
  if (architecture.empty()) architecture = std::string(arch_class_name(arch));
  if (model_type.empty()) model_type = std::string(arch_name(arch));
  return arch;
}

int as_int(int64_t v) { return static_cast<int>(v); }

void parse_rope(const JsonReader& r, const ArchKeys& k, ModelDesc& d) {
  d.rope_theta = k.default_theta;
  auto check_type = [&](const nlohmann::json& o, std::string_view key) {
    if (!o.is_object())
      r.fail_key(key, fmt::format("expected an object or null, found {}", describe_json(o)));
    for (const char* tk : {"rope_type", "type"}) {
      auto it = o.find(tk);
      if (it == o.end() || it->is_null()) continue;
      if (!it->is_string() || it->get<std::string>() != "default")
        r.fail_key(key, fmt::format("{} {} is not supported (supported: \"default\", i.e. plain RoPE "
                                    "without scaling)", tk, describe_json(*it)));
    }
  };
  if (const auto* rp = r.find("rope_parameters")) {
    check_type(*rp, "rope_parameters");
    JsonReader sub(*rp, fmt::format("{} (rope_parameters)", r.what()));
    if (auto t = sub.opt_number("rope_theta", 1e-6, 1e30)) d.rope_theta = *t;
  }
  if (const auto* rs = r.find("rope_scaling")) check_type(*rs, "rope_scaling");
  if (auto t = r.opt_number("rope_theta", 1e-6, 1e30)) d.rope_theta = *t;
  if (auto p = r.opt_number("partial_rotary_factor", 0.0, 1.0); p && *p != 1.0)
    r.fail_key("partial_rotary_factor", fmt::format("only 1.0 (RoPE over the whole head) is supported, found {}", *p));
}

void parse_experts(const JsonReader& r, const ArchKeys& k, ModelDesc& d) {
  auto e1 = r.opt_int(k.experts_key, 1, 65536);
  auto e2 = r.opt_int(k.experts_alt_key, 1, 65536);
  if (!e1 && !e2)
    r.fail_key(k.experts_key, "required integer is missing (the number of experts per MoE layer)");
  if (e1 && e2 && *e1 != *e2)
    r.fail_key(k.experts_key, fmt::format("{} disagrees with '{}' = {}", *e1, k.experts_alt_key, *e2));
  d.num_experts = as_int(e1 ? *e1 : *e2);
  const std::string_view ekey = e1 ? k.experts_key : k.experts_alt_key;
  const int64_t top_k = r.req_int("num_experts_per_tok", 1, 65536);
  if (top_k > d.num_experts)
    r.fail_key("num_experts_per_tok", fmt::format("top-k {} exceeds the number of experts {} ('{}')",
                                                  top_k, d.num_experts, ekey));
  d.top_k = as_int(top_k);
  d.expert_ffn = as_int(r.req_int(k.expert_ffn_key, 1, kMaxDim));
  d.norm_topk_prob = k.norm_topk_always ? true : r.opt_bool("norm_topk_prob").value_or(false);
}

void parse_layer_kinds(const JsonReader& r, const ArchKeys& k, ModelDesc& d) {
  d.is_moe.assign(size_t(d.layers), true);
  if (k.dense_ffn_key.empty()) return;
  const int64_t step = r.opt_int("decoder_sparse_step", 1, 1 << 20).value_or(1);
  const auto only = r.int_list("mlp_only_layers", 0, INT32_MAX);
  for (size_t i = 0; i < only.size(); ++i)
    if (only[i] >= d.layers)
      r.fail_key("mlp_only_layers", fmt::format("entry [{}] = {} is not a layer (num_hidden_layers = {})",
                                                i, only[i], d.layers));
  for (int l = 0; l < d.layers; ++l) {
    bool dense = (l + 1) % step != 0;
    for (int o : only) dense = dense || o == l;
    d.is_moe[size_t(l)] = !dense;
  }
  if (d.num_moe_layers() < d.layers)
    d.dense_ffn = as_int(r.req_int(k.dense_ffn_key, 1, kMaxDim));
}

void validate(const JsonReader& r, const ModelDesc& d) {
  if (d.heads % d.kv_heads != 0)
    r.fail_key("num_key_value_heads", fmt::format("{} does not divide num_attention_heads = {}",
                                                  d.kv_heads, d.heads));
  if (d.head_dim % 2 != 0)
    r.fail_key("head_dim", fmt::format("RoPE needs an even head_dim, found {}", d.head_dim));
  if (int64_t(d.heads) * d.head_dim > kMaxDim)
    r.fail_key("head_dim", fmt::format("num_attention_heads * head_dim = {} * {} is too large",
                                       d.heads, d.head_dim));
  if (d.qk_norm == QkNorm::FullWidth && d.q_dim() != d.hidden)
    r.fail_key("head_dim",
               fmt::format("{} normalises q over hidden_size = {}, so num_attention_heads * head_dim "
                           "must equal it; found {} * {} = {}",
                           d.architecture, d.hidden, d.heads, d.head_dim, d.q_dim()));
  // Every count below is int64; refuse sizes whose products could overflow it.
  const double params = double(d.vocab) * d.hidden * 2 +
                        double(d.layers) * (4.0 * d.hidden * d.q_dim() +
                                            3.0 * d.hidden * std::max(d.expert_ffn, d.dense_ffn) * d.num_experts);
  if (params > 1e15)
    fail("{}: the sizes describe a model of about {:.3g} parameters, which is not plausible "
         "(hidden_size {}, num_hidden_layers {}, experts {} of width {}, vocab_size {})",
         r.what(), params, d.hidden, d.layers, d.num_experts, d.expert_ffn, d.vocab);
  auto check_id = [&](std::string_view key, int id) {
    if (id >= d.vocab)
      r.fail_key(key, fmt::format("token id {} is outside the vocabulary (vocab_size = {})", id, d.vocab));
  };
  if (d.bos_token_id) check_id("bos_token_id", *d.bos_token_id);
  if (d.pad_token_id) check_id("pad_token_id", *d.pad_token_id);
  for (int e : d.eos_token_ids) check_id("eos_token_id", e);
}

}  // namespace

ModelDesc parse_model_desc(const nlohmann::json& j, std::string_view what) {
  const JsonReader r(j, what);
  ModelDesc d;
  d.arch = detect_arch(r, d.architecture, d.model_type);
  const ArchKeys k = keys_for(d.arch);
  d.names = TensorNames(d.arch);

  d.hidden = as_int(r.req_int("hidden_size", 1, kMaxDim));
  d.layers = as_int(r.req_int("num_hidden_layers", 1, 4096));
  d.heads = as_int(r.req_int("num_attention_heads", 1, 4096));
  d.kv_heads = as_int(r.opt_int("num_key_value_heads", 1, 4096).value_or(d.heads));
  if (auto hd = r.opt_int("head_dim", 1, 65536)) {
    d.head_dim = as_int(*hd);
  } else {
    if (d.hidden % d.heads != 0)
      r.fail_key("num_attention_heads",
                 fmt::format("{} does not divide hidden_size = {} and no head_dim is given", d.heads, d.hidden));
    d.head_dim = d.hidden / d.heads;
  }
  d.vocab = as_int(r.req_int("vocab_size", 1, kMaxVocab));
  d.max_positions = as_int(r.opt_int("max_position_embeddings", 1, 1ll << 30).value_or(k.default_max_positions));

  if (auto act = r.opt_string("hidden_act"); act && *act != "silu")
    r.fail_key("hidden_act", fmt::format("only \"silu\" (SwiGLU experts) is supported, found \"{}\"", *act));
  if (r.opt_bool("attention_bias").value_or(false))
    r.fail_key("attention_bias", "biases on the attention projections are not supported (expected false)");

  parse_experts(r, k, d);
  parse_layer_kinds(r, k, d);
  d.qk_norm = k.qk_norm;
  if (k.has_clip_qkv)
    if (auto c = r.opt_number("clip_qkv", 0.0, 1e30)) {
      if (*c <= 0.0) r.fail_key("clip_qkv", fmt::format("expected a positive number or null, found {}", *c));
      d.clip_qkv = static_cast<float>(*c);
    }
  d.rms_eps = static_cast<float>(r.opt_number("rms_norm_eps", 1e-12, 1.0).value_or(k.default_eps));
  parse_rope(r, k, d);
  if (k.has_sliding && (!k.sliding_needs_flag || r.opt_bool("use_sliding_window").value_or(false)))
    if (auto w = r.opt_int("sliding_window", 1, 1ll << 30)) d.sliding_window = as_int(*w);
  d.tie_word_embeddings = r.opt_bool("tie_word_embeddings").value_or(false);

  for (const char* key : {"dtype", "torch_dtype"}) {
    auto s = r.opt_string(key);
    if (!s) continue;
    auto t = parse_torch_dtype(*s);
    if (!t) r.fail_key(key, fmt::format("expected \"bfloat16\", \"float16\" or \"float32\", found \"{}\"", *s));
    d.torch_dtype = *t;
    break;
  }
  if (auto b = r.opt_int("bos_token_id", 0, kMaxTokenId)) d.bos_token_id = as_int(*b);
  if (auto p = r.opt_int("pad_token_id", 0, kMaxTokenId)) d.pad_token_id = as_int(*p);
  d.eos_token_ids = r.int_or_list("eos_token_id", 0, kMaxTokenId);
  validate(r, d);
  return d;
}

ModelDesc load_model_desc(const std::filesystem::path& path) {
  std::error_code ec;
  const bool is_dir = std::filesystem::is_directory(path, ec);
  const auto config = is_dir ? path / "config.json" : path;
  if (!std::filesystem::exists(config, ec))
    fail("{}: not found (a Hugging Face checkpoint folder holds config.json)", config.string());
  ModelDesc d = parse_model_desc(read_json_file(config), config.string());
  d.generation = load_generation_config(config.parent_path());
  for (int e : d.generation.eos_token_ids)
    if (e >= d.vocab)
      fail("{}: key 'eos_token_id': token id {} is outside the vocabulary (vocab_size = {} in {})",
           (config.parent_path() / "generation_config.json").string(), e, d.vocab, config.string());
  return d;
}

int ModelDesc::num_moe_layers() const {
  int n = 0;
  for (bool m : is_moe) n += m ? 1 : 0;
  return n;
}

std::vector<int> ModelDesc::stop_token_ids() const {
  return generation.eos_token_ids.empty() ? eos_token_ids : generation.eos_token_ids;
}

std::string_view qk_norm_name(QkNorm q) {
  switch (q) {
    case QkNorm::None: return "none";
    case QkNorm::PerHead: return "per-head";
    case QkNorm::FullWidth: return "full-width";
  }
  return "?";
}

}  // namespace qllm
