#include "engine/model/generation_config.h"

#include "engine/common/error.h"
#include "engine/model/json_read.h"

#include <nlohmann/json.hpp>

#include <fstream>

namespace qllm {

GenerationConfig parse_generation_config(const nlohmann::json& j, std::string_view what) {
  const JsonReader r(j, what);
  constexpr int64_t kMaxId = 1 << 30;
  GenerationConfig g;
  g.present = true;
  g.eos_token_ids = r.int_or_list("eos_token_id", 0, kMaxId);
  if (auto v = r.opt_int("bos_token_id", 0, kMaxId)) g.bos_token_id = static_cast<int>(*v);
  if (auto v = r.opt_int("pad_token_id", 0, kMaxId)) g.pad_token_id = static_cast<int>(*v);
  g.do_sample = r.opt_bool("do_sample");
  if (auto v = r.opt_number("temperature", 0.0, 1e6)) g.temperature = static_cast<float>(*v);
  if (auto v = r.opt_number("top_p", 0.0, 1.0)) g.top_p = static_cast<float>(*v);
  if (auto v = r.opt_int("top_k", 0, 1 << 30)) g.top_k = static_cast<int>(*v);
  if (auto v = r.opt_number("repetition_penalty", 0.0, 1e6)) g.repetition_penalty = static_cast<float>(*v);
  if (auto v = r.opt_int("max_new_tokens", 0, 1 << 30)) g.max_new_tokens = static_cast<int>(*v);
  if (auto v = r.opt_int("max_length", 0, 1 << 30)) g.max_length = static_cast<int>(*v);
  return g;
}

GenerationConfig load_generation_config(const std::filesystem::path& dir) {
  const auto p = dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return {};
  return parse_generation_config(read_json_file(p), p.string());
}

}  // namespace qllm
