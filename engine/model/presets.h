// Internal to make_model: model presets and the config.json they produce.
#pragma once

#include "engine/common/dtype.h"
#include "engine/model/tensor_names.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::detail {

struct ModelPreset {
  std::string_view name;
  Arch arch;
  bool real;  // real shapes (vocab fixed) or tiny (vocab from the tokenizer)
  int hidden, layers, heads, kv_heads, head_dim;
  int vocab;  // 0 for tiny presets
  int max_positions;
  int experts, top_k, expert_ffn;
  int dense_ffn;                 // Qwen3 intermediate_size
  std::vector<int> mlp_only_layers;
  bool norm_topk_prob;
  double rope_theta, rms_eps;
  std::optional<int> bos, eos, pad;  // the real model's special token ids
};

std::vector<std::string> preset_names();
// The preset `name` for `arch` ("tiny" exists for every arch; a real preset
// for its own arch only). Throws qllm::Error listing the choices.
const ModelPreset& find_preset(std::string_view name, Arch arch);
// The arch a preset implies (tiny: nullopt).
std::optional<Arch> preset_arch(std::string_view name);

struct SpecialIds {
  std::optional<int> bos, eos, pad;
};

// config.json with every key transformers writes for the architecture.
nlohmann::json preset_config(const ModelPreset& p, int layers, int vocab, DType dtype,
                             const SpecialIds& ids);
nlohmann::json preset_generation_config(const ModelPreset& p, const SpecialIds& ids);

}  // namespace qllm::detail
