// Lexer for chat templates, following jinja2/lexer.py with trim_blocks=True,
// lstrip_blocks=True and keep_trailing_newline=False:
//  * newlines (\r\n, \r) become \n and one trailing newline is dropped;
//  * `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`, `-#}`
//    all whitespace after it;
//  * trim_blocks: one newline directly after `%}` or `#}` is dropped (not after
//    `+%}`);
//  * lstrip_blocks: spaces and tabs from the start of a line up to `{%` or `{#`
//    are dropped (not before `{%+`, never before `{{`).
#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/chat_template_ast.h"

namespace qllm::jinja {

void syntax_error(int line, std::string message) { throw ChatTemplateError(line, std::move(message)); }

namespace {

// Expressions are evaluated (and freed) recursively, and no tree is deeper than
// its tag is long: bounding a tag's tokens bounds the stack a template can use.
constexpr int kMaxTokensPerTag = 512;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Non-ASCII identifier characters (Python's XID_Start / XID_Continue, by
// general category).
bool is_unicode_name_char(char32_t c, bool start) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
      return true;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
      return !start;
    default:
      return false;
  }
}
bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int count_newlines(std::string_view s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// Whitespace as Python's str.isspace() sees it, over UTF-8.
bool all_space(std::string_view s) {
  if (s.empty()) return false;
  for (char32_t c : utf8_decode(s))
    if (!is_space(c)) return false;
  return true;
}

std::string rstrip_space(std::string_view s) { return str_strip(s, std::nullopt, false, true); }

class Lexer {
 public:
  explicit Lexer(const std::string& raw) {
    src_.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r') {
        src_ += '\n';
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      } else {
        src_ += raw[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    const std::size_t n = src_.size();
    while (pos_ < n) {
      std::size_t start = std::string::npos;
      for (std::size_t p = src_.find('{', pos_); p != std::string::npos; p = src_.find('{', p + 1)) {
        if (p + 1 < n && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) {
          start = p;
          break;
        }
      }
      if (start == std::string::npos) {
        emit_text(src_.substr(pos_));
        break;
      }
      const char kind = src_[start + 1];
      const char sign = start + 2 < n && (src_[start + 2] == '-' || src_[start + 2] == '+') ? src_[start + 2] : 0;
      std::string text = src_.substr(pos_, start - pos_);
      const int text_line = line_;
      line_ += count_newlines(text);
      if (sign == '-') {
        text = rstrip_space(text);
      } else if (sign != '+' && kind != '{') {
        std::size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting_) && all_space(std::string_view(text).substr(l_pos))) text.resize(l_pos);
      }
      if (!text.empty()) tokens_.push_back(Token{TokKind::Text, text_line, std::move(text)});
      pos_ = start + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        comment();
      } else {
        tag(kind == '%');
      }
      line_starting_ = src_[pos_ - 1] == '\n';
    }
    tokens_.push_back(Token{TokKind::Eof, line_, {}});
    return std::move(tokens_);
  }

 private:
  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back(Token{TokKind::Text, line_, std::move(text)});
  }

  bool at(std::string_view s) const { return src_.compare(pos_, s.size(), s) == 0; }

  // The length of the identifier character at p (UTF-8), or 0.
  std::size_t name_char_at(std::size_t p, bool start) const {
    const char c = src_[p];
    if (static_cast<unsigned char>(c) < 0x80) return (start ? is_name_start(c) : is_name_char(c)) ? 1 : 0;
    auto uc = static_cast<unsigned char>(c);
    std::size_t len = uc >= 0xF0 ? 4 : uc >= 0xE0 ? 3 : 2;
    auto cps = utf8_decode(std::string_view(src_).substr(p, len));
    return cps.size() == 1 && cps[0] != U'\uFFFD' && is_unicode_name_char(cps[0], start) ? len : 0;
  }

  // The length of the non-ASCII whitespace character at p, or 0.
  std::size_t unicode_space_at(std::size_t p) const {
    auto c = static_cast<unsigned char>(src_[p]);
    if (c < 0x80) return 0;
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    auto cps = utf8_decode(std::string_view(src_).substr(p, len));
    return cps.size() == 1 && is_space(cps[0]) ? len : 0;
  }

  void skip_whitespace_after_tag() {
    std::size_t end = pos_;
    while (end < src_.size()) {
      auto c = static_cast<unsigned char>(src_[end]);
      if (c < 0x80) {
        if (!is_ascii_space(static_cast<char>(c)) && !(c >= 0x1c && c <= 0x1f)) break;
        ++end;
      } else if (std::size_t n = unicode_space_at(end)) {
        end += n;
      } else {
        break;
      }
    }
    line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
    pos_ = end;
  }

  void comment() {
    const int open_line = line_;
    std::size_t q = src_.find("#}", pos_);
    if (q == std::string::npos) syntax_error(open_line, "missing end of comment tag '#}'");
    const char sign = q > pos_ && (src_[q - 1] == '-' || src_[q - 1] == '+') ? src_[q - 1] : 0;
    line_ += count_newlines(std::string_view(src_).substr(pos_, q - pos_));
    pos_ = q + 2;
    if (sign == '-') {
      skip_whitespace_after_tag();
    } else if (sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
    }
  }

  // Lexes the inside of {% ... %} or {{ ... }} up to and including the end marker.
  void tag(bool block) {
    const int open_line = line_;
    tokens_.push_back(Token{block ? TokKind::BlockBegin : TokKind::VarBegin, line_, {}});
    std::string brackets;  // closing brackets expected
    bool first_token = true;
    const std::size_t first_index = tokens_.size();
    while (true) {
      if (tokens_.size() - first_index > kMaxTokensPerTag)
        syntax_error(open_line, fmt::format("tag too long (more than {} tokens)", kMaxTokensPerTag));
      if (pos_ >= src_.size())
        syntax_error(open_line, block ? "unexpected end of template: '{%' tag is not closed with '%}'"
                                      : "unexpected end of template: '{{' tag is not closed with '}}'");
      if (brackets.empty() && end_marker(block)) return;
      const char c = src_[pos_];
      if (is_ascii_space(c)) {
        if (c == '\n') ++line_;
        ++pos_;
        continue;
      }
      if (std::size_t n = unicode_space_at(pos_)) {
        pos_ += n;
        continue;
      }
      if (is_digit(c)) {
        number();
      } else if (std::size_t first_len = name_char_at(pos_, true)) {
        std::size_t e = pos_ + first_len;
        while (std::size_t n = e < src_.size() ? name_char_at(e, false) : 0) e += n;
        std::string name = src_.substr(pos_, e - pos_);
        if (block && first_token && name == "raw") syntax_error(line_, "unsupported tag 'raw'");
        tokens_.push_back(Token{TokKind::Name, line_, std::move(name)});
        pos_ = e;
      } else if (c == '\'' || c == '"') {
        string_literal();
      } else {
        op(brackets);
      }
      first_token = false;
    }
  }

  bool end_marker(bool block) {
    const int line = line_;
    if (block) {
      if (at("+%}")) {
        pos_ += 3;
      } else if (at("-%}")) {
        pos_ += 3;
        skip_whitespace_after_tag();
      } else if (at("%}")) {
        pos_ += 2;
        if (pos_ < src_.size() && src_[pos_] == '\n') {
          ++pos_;
          ++line_;
        }
      } else {
        return false;
      }
    } else {
      if (at("-}}")) {
        pos_ += 3;
        skip_whitespace_after_tag();
      } else if (at("}}")) {
        pos_ += 2;
      } else {
        return false;
      }
    }
    tokens_.push_back(Token{block ? TokKind::BlockEnd : TokKind::VarEnd, line, {}});
    return true;
  }

  void number() {
    const std::size_t b = pos_;
    std::size_t e = b;
    auto digits = [&](std::size_t p) {
      std::size_t q = p;
      while (q < src_.size() && (is_digit(src_[q]) || (src_[q] == '_' && q > p && q + 1 < src_.size() &&
                                                        is_digit(src_[q + 1]))))
        ++q;
      return q;
    };
    const bool after_dot = b > 0 && src_[b - 1] == '.';
    std::string clean;
    // 0x.., 0o.., 0b..
    if (src_[b] == '0' && b + 1 < src_.size() && std::string_view("xXoObB").find(src_[b + 1]) != std::string_view::npos) {
      const char base_char = static_cast<char>(src_[b + 1] | 0x20);
      const int base = base_char == 'x' ? 16 : base_char == 'o' ? 8 : 2;
      e = b + 2;
      while (e < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) {
        if (src_[e] != '_') clean += src_[e];
        ++e;
      }
      push_int(clean, base, b, e);
      return;
    }
    e = digits(b);
    bool is_float = false;
    if (!after_dot && e + 1 < src_.size() && src_[e] == '.' && is_digit(src_[e + 1])) {
      e = digits(e + 1);
      is_float = true;
    }
    if (!after_dot && e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      std::size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && is_digit(src_[x])) {
        e = digits(x);
        is_float = true;
      }
    }
    for (std::size_t i = b; i < e; ++i)
      if (src_[i] != '_') clean += src_[i];
    if (is_float) {
      double v = 0;
      auto r = std::from_chars(clean.data(), clean.data() + clean.size(), v);
      if (r.ec != std::errc()) syntax_error(line_, fmt::format("invalid number '{}'", clean));
      tokens_.push_back(Token{TokKind::Float, line_, clean, 0, v});
      pos_ = e;
      return;
    }
    push_int(clean, 10, b, e);
  }

  void push_int(const std::string& digits, int base, std::size_t b, std::size_t e) {
    std::int64_t v = 0;
    auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
    if (digits.empty() || r.ec != std::errc() || r.ptr != digits.data() + digits.size())
      syntax_error(line_, fmt::format("invalid or too large integer '{}'", src_.substr(b, e - b)));
    tokens_.push_back(Token{TokKind::Int, line_, src_.substr(b, e - b), v, 0.0});
    pos_ = e;
  }

  void string_literal() {
    const char quote = src_[pos_];
    const int line = line_;
    std::string out;
    std::size_t i = pos_ + 1;
    while (true) {
      if (i >= src_.size()) syntax_error(line, "unterminated string literal");
      char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) syntax_error(line, "unterminated string literal");
      i = escape(i + 1, out, line);
    }
    pos_ = i + 1;
    tokens_.push_back(Token{TokKind::String, line, std::move(out)});
  }

  // Python's unicode-escape decoding of one escape; i is after the backslash.
  std::size_t escape(std::size_t i, std::string& out, int line) {
    const char c = src_[i];
    auto hex = [&](std::size_t start, int len) -> char32_t {
      if (start + static_cast<std::size_t>(len) > src_.size()) syntax_error(line, "truncated escape in string literal");
      std::uint32_t v = 0;
      auto r = std::from_chars(src_.data() + start, src_.data() + start + len, v, 16);
      if (r.ec != std::errc() || r.ptr != src_.data() + start + len || v > 0x10FFFF)
        syntax_error(line, "invalid escape in string literal");
      return static_cast<char32_t>(v);
    };
    switch (c) {
      case '\n': ++line_; return i + 1;  // line continuation
      case '\\': out += '\\'; return i + 1;
      case '\'': out += '\''; return i + 1;
      case '"': out += '"'; return i + 1;
      case 'a': out += '\a'; return i + 1;
      case 'b': out += '\b'; return i + 1;
      case 'f': out += '\f'; return i + 1;
      case 'n': out += '\n'; return i + 1;
      case 'r': out += '\r'; return i + 1;
      case 't': out += '\t'; return i + 1;
      case 'v': out += '\v'; return i + 1;
      case 'x': utf8_append(out, hex(i + 1, 2)); return i + 3;
      case 'u': utf8_append(out, hex(i + 1, 4)); return i + 5;
      case 'U': utf8_append(out, hex(i + 1, 8)); return i + 9;
      case 'N': syntax_error(line, "unsupported escape '\\N{...}' in string literal");
      default: break;
    }
    if (c >= '0' && c <= '7') {
      std::uint32_t v = 0;
      std::size_t j = i;
      while (j < i + 3 && j < src_.size() && src_[j] >= '0' && src_[j] <= '7') v = v * 8 + static_cast<std::uint32_t>(src_[j++] - '0');
      utf8_append(out, static_cast<char32_t>(v));
      return j;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      // Jinja2 decodes literals as source.encode("ascii", "backslashreplace")
      // .decode("unicode-escape"): a backslash before a non-ASCII character
      // yields the backslash and that character's escape text.
      const auto uc = static_cast<unsigned char>(c);
      const std::size_t len = uc >= 0xF0 ? 4 : uc >= 0xE0 ? 3 : 2;
      const char32_t cp = utf8_decode(std::string_view(src_).substr(i, len))[0];
      out += cp < 0x100 ? fmt::format("\\x{:02x}", static_cast<unsigned>(cp))
             : cp < 0x10000 ? fmt::format("\\u{:04x}", static_cast<unsigned>(cp))
                            : fmt::format("\\U{:08x}", static_cast<unsigned>(cp));
      return std::min(i + len, src_.size());
    }
    out += '\\';  // unknown escapes are kept as written
    return i;
  }

  void op(std::string& brackets) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (auto t : kTwo)
      if (at(t)) {
        tokens_.push_back(Token{TokKind::Op, line_, std::string(t)});
        pos_ += 2;
        return;
      }
    const char c = src_[pos_];
    if (std::string_view("+-*/%~[](){}<>=.,:|").find(c) == std::string_view::npos) {
      syntax_error(line_, static_cast<unsigned char>(c) < 0x80 ? fmt::format("unexpected character '{}'", c)
                                                                : std::string("unexpected non-ASCII character"));
    }
    if (c == '(' || c == '[' || c == '{') brackets += c == '(' ? ')' : c == '[' ? ']' : '}';
    if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) syntax_error(line_, fmt::format("unexpected '{}'", c));
      if (brackets.back() != c) syntax_error(line_, fmt::format("unexpected '{}', expected '{}'", c, brackets.back()));
      brackets.pop_back();
    }
    tokens_.push_back(Token{TokKind::Op, line_, std::string(1, c)});
    ++pos_;
  }

  std::string src_;
  std::size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(const std::string& source) { return Lexer(source).run(); }

}  // namespace qllm::jinja
