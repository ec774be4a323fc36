// Model presets: tiny test models per architecture and the real shapes
// (MODELS.md), and the config.json written for them.
#include "engine/model/presets.h"

#include "engine/common/error.h"

#include <fmt/format.h>

#include <array>

namespace qllm::detail {
namespace {

// clang-format off
const std::array<ModelPreset, 6> kPresets{{
    // name             arch            real   H    L   nh nkv  hd   V       maxpos  E    k  I     D     dense layers
    {"tiny",          Arch::Mixtral,  false, 64,   2,  4, 2,  16,  0,      4096,   4,   2, 128,  0,    {},  true,  1e6,  1e-5, 1, 2, std::nullopt},
    {"tiny",          Arch::Qwen3Moe, false, 64,   3,  4, 2,  32,  0,      4096,   8,   2, 128,  192,  {1}, true,  1e6,  1e-6, 151643, 151645, std::nullopt},
    {"tiny",          Arch::Olmoe,    false, 64,   2,  4, 2,  16,  0,      4096,   8,   2, 128,  0,    {},  false, 1e4,  1e-5, std::nullopt, 50279, 1},
    {"mixtral-8x7b",  Arch::Mixtral,  true,  4096, 32, 32, 8, 128, 32000,  32768,  8,   2, 14336, 0,   {},  true,  1e6,  1e-5, 1, 2, std::nullopt},
    {"qwen3-30b-a3b", Arch::Qwen3Moe, true,  2048, 48, 32, 4, 128, 151936, 40960,  128, 8, 768,  6144, {},  true,  1e6,  1e-6, 151643, 151645, std::nullopt},
    {"olmoe-1b-7b",   Arch::Olmoe,    true,  2048, 16, 16, 16, 128, 50304, 4096,   64,  8, 1024, 0,    {},  false, 1e4,  1e-5, std::nullopt, 50279, 1},
}};
// clang-format on

nlohmann::json opt_id(const std::optional<int>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

std::string_view torch_dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: return "float32";
  }
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& p : kPresets)
    if (out.empty() || out.back() != p.name) out.emplace_back(p.name);
  return out;
}

std::optional<Arch> preset_arch(std::string_view name) {
  for (const auto& p : kPresets)
    if (p.real && p.name == name) return p.arch;
  return std::nullopt;
}

const ModelPreset& find_preset(std::string_view name, Arch arch) {
  bool known = false;
  for (const auto& p : kPresets) {
    if (p.name != name) continue;
    known = true;
    if (p.arch == arch) return p;
  }
  if (known)
    fail("make-model: preset '{}' has architecture {}, not {} (use --arch {} or the tiny preset)", name,
         arch_name(*preset_arch(name)), arch_name(arch), arch_name(*preset_arch(name)));
  std::string all;
  for (const auto& n : preset_names()) all += (all.empty() ? "" : ", ") + n;
  fail("make-model: unknown preset '{}' (presets: {})", name, all);
}

nlohmann::json preset_config(const ModelPreset& p, int layers, int vocab, DType dtype, const SpecialIds& ids) {
  using nlohmann::json;
  const json rope{{"rope_theta", p.rope_theta}, {"rope_type", "default"}};
  json c{
      {"architectures", json::array({std::string(arch_class_name(p.arch))})},
      {"model_type", std::string(arch_name(p.arch))},
      {"attention_dropout", 0.0},
      {"bos_token_id", opt_id(ids.bos)},
      {"eos_token_id", opt_id(ids.eos)},
      {"pad_token_id", opt_id(ids.pad)},
      {"dtype", std::string(torch_dtype_name(dtype))},
      {"hidden_act", "silu"},
      {"hidden_size", p.hidden},
      {"initializer_range", 0.02},
      {"max_position_embeddings", p.max_positions},
      {"num_attention_heads", p.heads},
      {"num_experts_per_tok", p.top_k},
      {"num_hidden_layers", layers},
      {"num_key_value_heads", p.kv_heads},
      {"output_router_logits", false},
      {"rms_norm_eps", p.rms_eps},
      {"rope_parameters", rope},
      {"rope_theta", p.rope_theta},
      {"tie_word_embeddings", false},
      {"use_cache", true},
      {"vocab_size", vocab},
  };
  switch (p.arch) {
    case Arch::Mixtral:
      c["head_dim"] = p.head_dim;
      c["intermediate_size"] = p.expert_ffn;
      c["num_local_experts"] = p.experts;
      c["router_aux_loss_coef"] = 0.02;
      c["router_jitter_noise"] = 0.0;
      c["sliding_window"] = nullptr;
      break;
    case Arch::Qwen3Moe: {
      std::vector<int> only;
      for (int l : p.mlp_only_layers)
        if (l < layers) only.push_back(l);
      c["attention_bias"] = false;
      c["decoder_sparse_step"] = 1;
      c["head_dim"] = p.head_dim;
      c["intermediate_size"] = p.dense_ffn;
      c["max_window_layers"] = layers;
      c["mlp_only_layers"] = only;
      c["moe_intermediate_size"] = p.expert_ffn;
      c["norm_topk_prob"] = p.norm_topk_prob;
      c["num_experts"] = p.experts;
      c["router_aux_loss_coef"] = 0.001;
      c["sliding_window"] = nullptr;
      c["use_sliding_window"] = false;
      break;
    }
    case Arch::Olmoe:
      // No head_dim key: OLMoE derives it from hidden_size / heads.
      c["attention_bias"] = false;
      c["clip_qkv"] = nullptr;
      c["intermediate_size"] = p.expert_ffn;
      c["norm_topk_prob"] = p.norm_topk_prob;
      c["num_experts"] = p.experts;
      c["router_aux_loss_coef"] = 0.01;
      break;
  }
  return c;
}

nlohmann::json preset_generation_config(const ModelPreset& p, const SpecialIds& ids) {
  nlohmann::json g{{"_from_model_config", true}};
  if (ids.bos) g["bos_token_id"] = *ids.bos;
  if (ids.eos) g["eos_token_id"] = *ids.eos;
  if (ids.pad) g["pad_token_id"] = *ids.pad;
  if (p.arch == Arch::Qwen3Moe) {  // Qwen3's published sampling defaults
    g.erase("_from_model_config");
    g["do_sample"] = true;
    g["temperature"] = 0.6;
    g["top_k"] = 20;
    g["top_p"] = 0.95;
  }
  return g;
}

}  // namespace qllm::detail
