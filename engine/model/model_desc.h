// ModelDesc: everything qllm needs to know about a model's architecture, read
// once from config.json. The CPU forward pass, the CUDA kernels and the graph
// builder read this one type, so that architecture differences are data here
// instead of `if (arch == ...)` elsewhere:
//
//   * which layers are MoE and which dense          is_moe[layer]
//   * whether the top-k weights are renormalised     norm_topk_prob
//   * which QK norm runs on the projections          qk_norm
//   * optional clamps, window, eps, RoPE theta       clip_qkv, sliding_window, ...
//   * the name and shape of every tensor            names, tensor_specs()
//
// Supported: MixtralForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM.
#pragma once

#include "engine/common/dtype.h"
#include "engine/model/generation_config.h"
#include "engine/model/tensor_names.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

enum class QkNorm : uint8_t {
  None,       // Mixtral
  PerHead,    // Qwen3-MoE: RMSNorm over head_dim, per head, weight [head_dim]
  FullWidth,  // OLMoE: RMSNorm over all of q [heads*head_dim] and all of k
              // [kv_heads*head_dim], on the projection output
};
std::string_view qk_norm_name(QkNorm q);  // "none", "per-head", "full-width"

// Parameter counts (elements) by role group.
struct ParamCounts {
  int64_t embed = 0;      // token embedding table
  int64_t lm_head = 0;    // 0 when tied to the embedding
  int64_t norms = 0;      // input, post-attention, final and QK norms
  int64_t attention = 0;  // q, k, v, o projections
  int64_t router = 0;
  int64_t experts = 0;    // all experts of all MoE layers
  int64_t dense_mlp = 0;  // dense layers' MLPs
  int64_t total() const {
    return embed + lm_head + norms + attention + router + experts + dense_mlp;
  }
};

// Weight bytes read to decode one token (batch 1, no reuse): what bounds a
// memory-bound decode step. KV-cache reads are separate (kv_bytes_per_token).
struct DecodeTraffic {
  int64_t embed_row = 0;  // one row of the embedding table
  int64_t attention = 0;  // q, k, v, o of every layer
  int64_t norms = 0;
  int64_t router = 0;
  int64_t experts = 0;    // top_k experts per MoE layer
  int64_t dense_mlp = 0;  // dense layers' MLPs
  int64_t lm_head = 0;    // the whole LM head (the embedding when tied)
  int64_t total() const {
    return embed_row + attention + norms + router + experts + dense_mlp + lm_head;
  }
};

struct ModelDesc {
  Arch arch = Arch::Mixtral;
  std::string architecture;  // architectures[0] as written, or the class name
  std::string model_type;    // as written, or arch_name(arch)

  int hidden = 0;            // hidden_size (H)
  int layers = 0;            // num_hidden_layers
  int heads = 0;             // num_attention_heads
  int kv_heads = 0;          // num_key_value_heads (GQA)
  int head_dim = 0;          // head_dim, else hidden / heads
  int vocab = 0;             // vocab_size
  int max_positions = 0;     // max_position_embeddings

  int num_experts = 0;       // E
  int top_k = 0;             // num_experts_per_tok
  int expert_ffn = 0;        // I: width of one expert's gate/up output
  int dense_ffn = 0;         // D: width of the dense MLP (0 when no dense layer)
  std::vector<bool> is_moe;  // per layer: MoE block (true) or dense MLP (false)
  bool norm_topk_prob = true;  // renormalise the k routing weights to sum to 1

  QkNorm qk_norm = QkNorm::None;
  std::optional<float> clip_qkv;        // clamp q, k, v to [-c, c] (OLMoE)
  float rms_eps = 1e-5f;
  double rope_theta = 10000.0;
  std::optional<int> sliding_window;    // attention window (tokens), if any
  bool tie_word_embeddings = false;     // LM head shares the embedding
  std::optional<DType> torch_dtype;     // torch_dtype / dtype, when given

  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;       // config.json's eos_token_id (int or list)
  std::optional<int> pad_token_id;

  TensorNames names;
  GenerationConfig generation;  // from generation_config.json when present

  // --- derived ---
  int q_dim() const { return heads * head_dim; }     // q_proj rows
  int kv_dim() const { return kv_heads * head_dim; }  // k_proj / v_proj rows
  int group_size() const { return heads / kv_heads; }  // q heads per kv head
  int num_moe_layers() const;
  bool is_moe_layer(int layer) const { return is_moe[size_t(layer)]; }
  // The dtype a writer uses when none is asked for: torch_dtype or BF16.
  DType weight_dtype() const { return torch_dtype.value_or(DType::BF16); }
  // Stop tokens: generation_config.json's eos ids when given, else config.json's.
  std::vector<int> stop_token_ids() const;

  // Every weight, in a stable order (embedding, layer by layer, final norm, LM
  // head), with its names and shape. The LM head is left out when tied.
  std::vector<TensorSpec> tensor_specs(ExpertLayout layout = ExpertLayout::PerExpert) const;

  ParamCounts param_counts() const;
  int64_t param_count() const { return param_counts().total(); }
  // Parameters used per token: all but the (E - top_k) unselected experts of
  // each MoE layer.
  int64_t active_param_count() const;
  // param_counts() in bytes for weights of type `t`.
  ParamCounts param_bytes(DType t) const;
  DecodeTraffic decode_bytes_per_token(DType t) const;
  DecodeTraffic decode_bytes_per_token() const { return decode_bytes_per_token(weight_dtype()); }
  // K and V of one token across all layers, in KV dtype `t`.
  int64_t kv_bytes_per_token(DType t) const;

  // One-paragraph description for `qllm inspect` and logs.
  std::string summary() const;
};

// Parses a config.json object. `what` names the source in error messages
// ("path/config.json"). Throws qllm::Error naming `what` and the key on any
// missing, mistyped or inconsistent field, or an unknown architecture.
ModelDesc parse_model_desc(const nlohmann::json& config, std::string_view what);

// Reads `path`/config.json (or `path` itself when it is a file), and
// generation_config.json beside it when present.
ModelDesc load_model_desc(const std::filesystem::path& checkpoint_dir_or_config_json);

}  // namespace qllm
