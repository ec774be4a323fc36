// Regular expressions of tokenizer.json (Split pre-tokenizers, Replace
// normalizers and decoders), compiled with PCRE2 in UTF + UCP mode with JIT.
//
// Hugging Face compiles these patterns with Oniguruma. The two engines agree on
// the syntax the published tokenizers use (\p{L}, \p{N}, (?i:...), lookahead)
// except for \s: Oniguruma's \s is Unicode White_Space, PCRE2's also takes
// U+180E. The pattern is rewritten so \s and \S mean what Oniguruma means
// (except \S inside a character class, which still takes U+180E as a space).
#pragma once

#include "engine/tokenizer/json_util.h"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

struct RegexMatch {
  size_t start = 0, end = 0;  // byte offsets
};

class Regex {
 public:
  // `literal`: match `pattern` as a plain string. Throws qllm::Error with
  // PCRE2's message and offset when the pattern does not compile.
  static Regex compile(std::string_view pattern, bool literal = false);

  // All non-overlapping non-empty matches, left to right. `text` must be
  // valid UTF-8.
  std::vector<RegexMatch> find_all(std::string_view text) const;

  const std::string& pattern() const;
  bool is_literal() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// A tokenizer.json pattern: {"String": "..."} (literal) or {"Regex": "..."}.
Regex parse_pattern(const tokjson::Json& j, const tokjson::Where& w);

// Rewrites \s and \S to Oniguruma's meaning for PCRE2 (exposed for tests).
std::string translate_oniguruma_spaces(std::string_view pattern);

}  // namespace qllm
