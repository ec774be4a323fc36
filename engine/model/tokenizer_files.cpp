#include "engine/model/tokenizer_files.h"

#include "engine/common/error.h"
#include "engine/tokenizer/generated.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace qllm::detail {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("make-model: cannot read {}", p.string());
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

nlohmann::json parse(const std::string& text, const fs::path& p) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("make-model: {}: not valid JSON: {}", p.string(), e.what());
  }
}

// The id of `content` in tokenizer.json: added tokens, then the model vocab.
std::optional<int> token_id(const nlohmann::json& tok, const std::string& content) {
  if (auto a = tok.find("added_tokens"); a != tok.end() && a->is_array())
    for (const auto& t : *a)
      if (t.is_object() && t.value("content", "") == content && t.contains("id") && t["id"].is_number_integer())
        return t["id"].get<int>();
  const auto m = tok.find("model");
  if (m == tok.end() || !m->is_object()) return std::nullopt;
  const auto v = m->find("vocab");
  if (v != m->end() && v->is_object()) {
    auto it = v->find(content);
    if (it != v->end() && it->is_number_integer()) return it->get<int>();
  }
  return std::nullopt;
}

// tokenizer_config.json's bos_token etc.: a string, {"content": ...} or null.
std::optional<std::string> special(const nlohmann::json& cfg, const char* key) {
  const auto it = cfg.find(key);
  if (it == cfg.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return std::nullopt;
}

int vocab_size_of(const nlohmann::json& tok, const fs::path& p) {
  int64_t top = -1;
  const auto m = tok.find("model");
  if (m != tok.end() && m->is_object()) {
    const auto v = m->find("vocab");
    if (v != m->end() && v->is_object()) {
      for (const auto& [k, id] : v->items())
        if (id.is_number_integer()) top = std::max<int64_t>(top, id.get<int64_t>());
    } else if (v != m->end() && v->is_array()) {  // Unigram: [[piece, score], ...]
      top = static_cast<int64_t>(v->size()) - 1;
    }
  }
  if (auto a = tok.find("added_tokens"); a != tok.end() && a->is_array())
    for (const auto& t : *a)
      if (t.is_object() && t.contains("id") && t["id"].is_number_integer())
        top = std::max<int64_t>(top, t["id"].get<int64_t>());
  if (top < 0 || top >= (1 << 26))
    fail("make-model: {}: cannot tell the vocabulary size (no model.vocab or added_tokens ids)", p.string());
  return static_cast<int>(top + 1);
}

}  // namespace

TokenizerPlan generated_tokenizer(int vocab_size) {
  const GeneratedTokenizerFiles g = make_generated_tokenizer(vocab_size);
  TokenizerPlan t;
  t.files = {{"tokenizer.json", g.tokenizer_json}, {"tokenizer_config.json", g.tokenizer_config_json}};
  t.size = g.vocab_size;
  if (g.bos_id >= 0) t.ids.bos = g.bos_id;
  if (g.eos_id >= 0) t.ids.eos = g.eos_id;
  t.label = fmt::format("generated (vocab {})", g.vocab_size);
  return t;
}

TokenizerPlan copied_tokenizer(const fs::path& dir) {
  TokenizerPlan t;
  t.label = dir.string();
  const auto tok_path = dir / "tokenizer.json";
  t.files.emplace_back("tokenizer.json", read_text(tok_path));
  const nlohmann::json tok = parse(t.files.back().second, tok_path);
  t.size = vocab_size_of(tok, tok_path);
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    std::error_code ec;
    if (!fs::is_regular_file(dir / name, ec)) continue;
    t.files.emplace_back(name, read_text(dir / name));
    const nlohmann::json cfg = parse(t.files.back().second, dir / name);
    if (!cfg.is_object()) continue;
    auto lookup = [&](std::optional<int>& id, const char* key) {
      if (id) return;
      if (auto s = special(cfg, key)) id = token_id(tok, *s);
    };
    lookup(t.ids.bos, "bos_token");
    lookup(t.ids.eos, "eos_token");
    lookup(t.ids.pad, "pad_token");
  }
  return t;
}

void write_tokenizer(const TokenizerPlan& t, const fs::path& out_dir) {
  for (const auto& [name, content] : t.files) {
    std::ofstream f(out_dir / name, std::ios::binary | std::ios::trunc);
    f << content;
    f.close();
    if (!f) fail("make-model: cannot write {}", (out_dir / name).string());
  }
}

}  // namespace qllm::detail
