// Chat templates: the Jinja2 `chat_template` of a Hugging Face checkpoint,
// rendered as transformers' apply_chat_template renders it (jinja2's
// ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, transformers'
// tojson, raise_exception and namespace).
//
// Only the subset of Jinja2 that chat templates use is implemented; anything
// else fails with a ChatTemplateError naming the construct and the template line:
// at construction for syntax errors, unsupported tags and filter/test names
// Jinja2 does not know (as Jinja2's compiler does), at render time for the rest.
//
// Supported: {{ }}, {% %}, {# #}, whitespace control, if/elif/else, for (with
// else, an if filter, unpacking, loop.*, break/continue), set (also ns.attr and
// block set), namespace(), raise_exception(), range(), dict(), {% generation %};
// literals, lists, dicts, tuples, . and [] access, slices, arithmetic, ~,
// comparisons, in, and/or/not, `a if c else b`; the tests defined, undefined,
// none, string, number, integer, float, boolean, true, false, mapping,
// iterable, sequence, odd, even, divisibleby, eq/ne/lt/le/gt/ge (and aliases),
// in, sameas; the filters length, count, tojson, string, trim, upper, lower,
// capitalize, join, default/d, first, last, list, reverse, replace, int, float,
// abs, items, map, select, reject, selectattr, rejectattr; str methods
// startswith, endswith, split, rsplit, strip, lstrip, rstrip, upper, lower,
// capitalize, replace, find, rfind, count, join; dict items, keys, values, get;
// list count, index.
// Not supported: macros, call/filter blocks, include/import/extends/block, raw,
// recursive loops, loop.changed, '%' string formatting, strftime_now, and the
// other Jinja2 filters (sort, unique, round, title, escape, ...). Known
// differences: tuples print as lists, `reverse` gives a list (Jinja2: an
// iterator), upper/lower use simple case mapping (no 'ß' -> 'SS'), integers
// are 64-bit (overflow is an error).
//
//   qllm::TokenizerConfig cfg = qllm::load_tokenizer_config(dir / "tokenizer_config.json");
//   std::string prompt = qllm::apply_chat_template(cfg, messages, /*add_generation_prompt=*/true);
//
// Values are JSON. Use nlohmann::ordered_json for the messages and tools: Python
// dicts keep their insertion order, and `tojson` prints keys in that order
// (a nlohmann::json converts implicitly, with its keys sorted).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/common/error.h"

namespace qllm {

namespace jinja {
struct Program;
}

// A template error: syntax, an unsupported construct, a type error while
// rendering, or the template's own raise_exception(msg). what() is
// "chat template line N: <detail>".
class ChatTemplateError : public Error {
 public:
  ChatTemplateError(int line, std::string detail, bool raised_by_template = false);
  int line() const { return line_; }
  // The message without the line prefix; for raise_exception, the template's text.
  const std::string& detail() const { return detail_; }
  bool raised_by_template() const { return raised_; }

 private:
  int line_;
  std::string detail_;
  bool raised_;
};

class ChatTemplate {
 public:
  // Parses the template; throws ChatTemplateError on a syntax error or an
  // unsupported tag.
  explicit ChatTemplate(std::string source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // context: the template's variables, e.g. {"messages": [...],
  // "add_generation_prompt": true, "bos_token": "<s>", "tools": [...]}.
  // Throws ChatTemplateError (raise_exception's text included).
  std::string render(const nlohmann::ordered_json& context) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::unique_ptr<jinja::Program> program_;
};

// The chat-related fields of a tokenizer_config.json. A special token is empty
// when the file sets it to null or leaves it out.
struct TokenizerConfig {
  std::string chat_template;
  std::string bos_token, eos_token, unk_token, pad_token;
  bool add_bos_token = false;
  bool add_eos_token = false;
};

// Reads tokenizer_config.json: chat_template as a string, or a list of
// {"name", "template"} (the one named "default" is used); special tokens as
// strings or {"content": ...} objects. Throws qllm::Error naming the file when
// it is absent or malformed. A file without a chat template gives an empty one.
TokenizerConfig load_tokenizer_config(const std::filesystem::path& tokenizer_config_json);

// The variables apply_chat_template passes to the template (see below); render
// a ChatTemplate built once from cfg.chat_template with them to avoid parsing
// the template for every request.
nlohmann::ordered_json chat_template_context(const TokenizerConfig& cfg,
                                             const nlohmann::ordered_json& messages,
                                             bool add_generation_prompt,
                                             const nlohmann::ordered_json& extra);

// Renders `messages` with the checkpoint's template as
// tokenizer.apply_chat_template(messages, tools=extra["tools"],
// add_generation_prompt=..., tokenize=False, **extra) does in transformers:
// message keys whose value is null are dropped, `reasoning_content` (or
// `thinking`, `reasoning`) is made available under both `reasoning_content` and
// `thinking`, the special tokens are variables, and `extra` (tools,
// enable_thinking, documents, ...) overrides them. Throws ChatTemplateError, or
// qllm::Error when the config has no chat template or messages is not a list of
// objects.
std::string apply_chat_template(const TokenizerConfig& cfg, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt,
                                const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

}  // namespace qllm
