// generation_config.json: the checkpoint's defaults for sampling and stopping.
// Every field is optional; absent fields stay empty and the engine's own
// defaults apply.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

namespace qllm {

struct GenerationConfig {
  bool present = false;              // the file was found and parsed
  std::vector<int> eos_token_ids;    // eos_token_id: int or list
  std::optional<int> bos_token_id;
  std::optional<int> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int> top_k;
  std::optional<float> repetition_penalty;
  std::optional<int> max_new_tokens;
  std::optional<int> max_length;      // prompt + generated tokens
};

// Parses a generation_config.json object; `what` names it in errors.
GenerationConfig parse_generation_config(const nlohmann::json& j, std::string_view what);
// Reads `dir`/generation_config.json; an empty config (present == false)
// when the file does not exist.
GenerationConfig load_generation_config(const std::filesystem::path& dir);

}  // namespace qllm
