#include "engine/tokenizer/regex.h"

#include "engine/common/error.h"
#include "engine/tokenizer/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace qllm {

struct Regex::Impl {
  std::string pattern;
  bool literal = false;
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }
};

std::string translate_oniguruma_spaces(std::string_view p) {
  // Oniguruma's \s is Unicode White_Space. PCRE2's \s and \p{Xsp} also take
  // U+180E, so the set is spelled out.
  static constexpr std::string_view kSpace =
      "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
      "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += class_depth > 0 ? std::string(kSpace) : "[" + std::string(kSpace) + "]";
      } else if (e == 'S') {
        // Inside a class a negated set cannot be spelled out; \P{Xsp} differs
        // from Oniguruma only on U+180E there.
        out += class_depth > 0 ? "\\P{Xsp}" : "[^" + std::string(kSpace) + "]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

Regex Regex::compile(std::string_view pattern, bool literal) {
  auto impl = std::make_shared<Impl>();
  impl->pattern = std::string(pattern);
  impl->literal = literal;
  const std::string source = literal ? impl->pattern : translate_oniguruma_spaces(pattern);
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  if (literal) options = PCRE2_UTF | PCRE2_LITERAL;
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options,
                             &err, &offset, nullptr);
  if (impl->code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("regex \"{}\" does not compile: {} at offset {}", impl->pattern,
         reinterpret_cast<const char*>(msg), static_cast<size_t>(offset));
  }
  pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
  Regex r;
  r.impl_ = std::move(impl);
  return r;
}

// A Replace/Split "pattern": {"String": "..."} or {"Regex": "..."}.
Regex parse_pattern(const tokjson::Json& j, const tokjson::Where& w) {
  tokjson::expect_object(j, w);
  const tokjson::Json* s = tokjson::optional_member(j, "String");
  const tokjson::Json* r = tokjson::optional_member(j, "Regex");
  const tokjson::Json* v = s != nullptr ? s : r;
  if (v == nullptr || !v->is_string())
    tokjson::bad(w, "expected {\"String\": \"...\"} or {\"Regex\": \"...\"}");
  try {
    return Regex::compile(v->get<std::string>(), s != nullptr);
  } catch (const Error& e) {
    tokjson::bad(w, e.what());
  }
}

const std::string& Regex::pattern() const { return impl_->pattern; }

bool Regex::is_literal() const { return impl_->literal; }

std::vector<RegexMatch> Regex::find_all(std::string_view text) const {
  std::vector<RegexMatch> out;
  if (text.empty()) return out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (md == nullptr) throw std::bad_alloc();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter has no such limit
      rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("regex \"{}\" failed while matching: {}", impl_->pattern,
           reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t s = ov[0], e = ov[1];
    if (e > s) {
      out.push_back({s, e});
      pos = e;
    } else {  // empty match: step over one character
      if (s >= text.size()) break;
      pos = s + utf8::char_len(static_cast<unsigned char>(text[s]));
    }
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace qllm
