// UTF-8 helpers for the tokenizer.
//
// Invalid input is never trusted: `next` classifies the bytes at a position as
// a character, an invalid sequence (with the length Rust's
// String::from_utf8_lossy replaces by one U+FFFD: the "maximal subpart" rule),
// or an incomplete sequence cut by the end of the buffer. `LossyStream` applies
// the same rule to bytes arriving in pieces: it holds an incomplete tail until
// it completes or can no longer complete, so a stream gives exactly the text of
// the whole buffer repaired at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qllm::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

struct Step {
  enum Kind { kChar, kInvalid, kIncomplete };
  Kind kind = kChar;
  size_t len = 1;   // bytes consumed (kIncomplete: the bytes up to the end)
  char32_t cp = 0;  // the code point when kind == kChar
};

// Classifies the bytes of `s` starting at `i` (i < s.size()).
Step next(std::string_view s, size_t i);

// Appends the UTF-8 encoding of `cp` (a valid scalar value).
void append(std::string& out, char32_t cp);

bool is_valid(std::string_view s);

// `s` with every invalid sequence replaced by U+FFFD (from_utf8_lossy rules).
std::string to_lossy(std::string_view s);

// Byte length of the character starting with lead byte `b` (1 for invalid).
inline size_t char_len(unsigned char b) {
  return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 1;
}

// Unicode White_Space (Rust's char::is_whitespace).
bool is_whitespace(char32_t c);

// Incremental form of to_lossy: push bytes, get the complete characters.
class LossyStream {
 public:
  void push(std::string_view bytes, std::string& out);
  void finish(std::string& out);  // an incomplete tail becomes one U+FFFD
  bool pending() const { return !tail_.empty(); }

 private:
  std::string tail_;
};

}  // namespace qllm::utf8
