#include "engine/tokenizer/utf8.h"

namespace qllm::utf8 {

Step next(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {Step::kChar, 1, b0};
  size_t width = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    width = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    width = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    width = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {Step::kInvalid, 1, 0};
  }
  char32_t cp = b0 & (0xFF >> (width + 1));
  for (size_t k = 1; k < width; ++k) {
    if (i + k >= s.size()) return {Step::kIncomplete, k, 0};
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
    if (b < min || b > max) return {Step::kInvalid, k, 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {Step::kChar, width, cp};
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Step st = next(s, i);
    if (st.kind != Step::kChar) return false;
    i += st.len;
  }
  return true;
}

std::string to_lossy(std::string_view s) {
  std::string out;
  LossyStream stream;
  stream.push(s, out);
  stream.finish(out);
  return out;
}

bool is_whitespace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

void LossyStream::push(std::string_view bytes, std::string& out) {
  std::string_view s = bytes;
  if (!tail_.empty()) {
    tail_.append(bytes);
    s = tail_;
  }
  size_t i = 0, run = 0;  // [run, i) is a stretch of valid text not yet copied
  while (i < s.size()) {
    const Step st = next(s, i);
    if (st.kind == Step::kChar) {
      i += st.len;
      continue;
    }
    out.append(s.substr(run, i - run));
    if (st.kind == Step::kIncomplete) {
      std::string rest(s.substr(i));
      tail_ = std::move(rest);
      return;
    }
    out.append(kReplacement);
    i += st.len;
    run = i;
  }
  out.append(s.substr(run));
  tail_.clear();
}

void LossyStream::finish(std::string& out) {
  if (!tail_.empty()) out.append(kReplacement);
  tail_.clear();
}

}  // namespace qllm::utf8
