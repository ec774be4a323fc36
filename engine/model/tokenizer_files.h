// Internal to make_model: the tokenizer files a synthetic checkpoint gets,
// generated (engine/tokenizer/generated.h) or copied from a real folder.
#pragma once

#include "engine/model/presets.h"

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace qllm::detail {

struct TokenizerPlan {
  std::vector<std::pair<std::string, std::string>> files;  // file name, content
  int size = 0;       // 1 + the largest token id
  SpecialIds ids;     // bos/eos/pad the tokenizer defines
  std::string label;  // for messages
};

TokenizerPlan generated_tokenizer(int vocab_size);
// tokenizer.json (required), tokenizer_config.json and special_tokens_map.json
// (when present) from `dir`; bos/eos/pad ids looked up from tokenizer_config.
TokenizerPlan copied_tokenizer(const std::filesystem::path& dir);
void write_tokenizer(const TokenizerPlan& t, const std::filesystem::path& out_dir);

}  // namespace qllm::detail
