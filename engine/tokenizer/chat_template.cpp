// Public chat-template API: ChatTemplate, tokenizer_config.json reading and
// apply_chat_template (see chat_template.h).
#include "engine/tokenizer/chat_template.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "engine/tokenizer/chat_template_ast.h"

namespace qllm {

ChatTemplateError::ChatTemplateError(int line, std::string detail, bool raised_by_template)
    : Error(line > 0 ? fmt::format("chat template line {}: {}", line, detail) : fmt::format("chat template: {}", detail)),
      line_(line),
      detail_(std::move(detail)),
      raised_(raised_by_template) {}

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)), program_(jinja::parse(source_)) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return jinja::render_program(*program_, context);
}

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open file", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special token: a string, {"content": "..."} (AddedToken), or null.
std::string token_string(const nlohmann::json& cfg, const char* key, const std::filesystem::path& path) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  fail("{}: '{}' must be a string or an object with a string 'content'", path.string(), key);
}

bool flag(const nlohmann::json& cfg, const char* key, const std::filesystem::path& path) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return false;
  if (!it->is_boolean()) fail("{}: '{}' must be true or false", path.string(), key);
  return it->get<bool>();
}

}  // namespace

TokenizerConfig load_tokenizer_config(const std::filesystem::path& tokenizer_config_json) {
  const auto& path = tokenizer_config_json;
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", path.string(), e.what());
  }
  if (!cfg.is_object()) fail("{}: expected a JSON object", path.string());
  TokenizerConfig out;
  auto t = cfg.find("chat_template");
  if (t != cfg.end() && !t->is_null()) {
    if (t->is_string()) {
      out.chat_template = t->get<std::string>();
    } else if (t->is_array()) {
      bool found = false;
      for (const auto& entry : *t) {
        if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
            !entry["name"].is_string() || !entry["template"].is_string())
          fail("{}: 'chat_template' list entries must be {{\"name\": string, \"template\": string}}", path.string());
        if (entry["name"] == "default") {
          out.chat_template = entry["template"].get<std::string>();
          found = true;
        }
      }
      if (!found) fail("{}: 'chat_template' list has no template named 'default'", path.string());
    } else {
      fail("{}: 'chat_template' must be a string or a list of named templates", path.string());
    }
  }
  // Newer checkpoints keep the template in chat_template.jinja beside the
  // config; transformers prefers that file.
  auto jinja_file = path.parent_path() / "chat_template.jinja";
  if (std::filesystem::exists(jinja_file)) out.chat_template = read_file(jinja_file);
  out.bos_token = token_string(cfg, "bos_token", path);
  out.eos_token = token_string(cfg, "eos_token", path);
  out.unk_token = token_string(cfg, "unk_token", path);
  out.pad_token = token_string(cfg, "pad_token", path);
  out.add_bos_token = flag(cfg, "add_bos_token", path);
  out.add_eos_token = flag(cfg, "add_eos_token", path);
  return out;
}

nlohmann::ordered_json chat_template_context(const TokenizerConfig& cfg, const nlohmann::ordered_json& messages,
                                             bool add_generation_prompt, const nlohmann::ordered_json& extra) {
  using Json = nlohmann::ordered_json;
  if (!messages.is_array()) fail("apply_chat_template: messages must be a list, got {}", messages.type_name());
  if (messages.empty()) fail("apply_chat_template: cannot apply a chat template to an empty conversation");
  if (!extra.is_object()) fail("apply_chat_template: extra variables must be a JSON object");
  Json plain = Json::array();
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    if (!m.is_object()) fail("apply_chat_template: message {} is a {}, not an object", i, m.type_name());
    // transformers drops keys whose value is None (e.g. "tool_calls": null).
    Json kept = Json::object();
    for (auto it = m.begin(); it != m.end(); ++it)
      if (!it.value().is_null()) kept[it.key()] = it.value();
    // ... and passes the reasoning under both names chat templates read.
    const Json* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
      auto it = kept.find(key);
      if (it != kept.end()) {
        reasoning = &*it;
        break;
      }
    }
    if (reasoning) {
      Json r = *reasoning;
      Json aliased = Json::object();
      aliased["thinking"] = r;
      for (auto it = kept.begin(); it != kept.end(); ++it) aliased[it.key()] = it.value();
      aliased["reasoning_content"] = r;
      kept = std::move(aliased);
    }
    plain.push_back(std::move(kept));
  }
  Json ctx = Json::object();
  const std::pair<const char*, const std::string*> tokens[] = {
      {"bos_token", &cfg.bos_token}, {"eos_token", &cfg.eos_token}, {"unk_token", &cfg.unk_token},
      {"pad_token", &cfg.pad_token}};
  for (const auto& [name, value] : tokens)
    if (!value->empty()) ctx[name] = *value;
  ctx["messages"] = std::move(plain);
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (it.key() == "messages" || it.key() == "add_generation_prompt")
      fail("apply_chat_template: '{}' cannot be passed as an extra variable", it.key());
    ctx[it.key()] = it.value();
  }
  return ctx;
}

std::string apply_chat_template(const TokenizerConfig& cfg, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const nlohmann::ordered_json& extra) {
  if (cfg.chat_template.empty()) fail("apply_chat_template: the tokenizer config has no chat_template");
  auto ctx = chat_template_context(cfg, messages, add_generation_prompt, extra);
  return ChatTemplate(cfg.chat_template).render(ctx);
}

}  // namespace qllm
