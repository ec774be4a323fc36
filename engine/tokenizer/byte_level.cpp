#include "engine/tokenizer/byte_level.h"

#include "engine/tokenizer/utf8.h"

#include <array>

namespace qllm::byte_level {
namespace {

struct Table {
  std::array<char32_t, 256> cp{};
  std::array<std::string, 256> text;
  std::array<int16_t, 512> byte;  // code point -> byte, -1 if none

  Table() {
    byte.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) cp[b] = printable(b) ? static_cast<char32_t>(b) : extra++;
    for (int b = 0; b < 256; ++b) {
      utf8::append(text[b], cp[b]);
      byte[cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

std::string_view char_of(uint8_t b) { return table().text[b]; }

int byte_of(char32_t c) { return c < 512 ? table().byte[c] : -1; }

void encode(std::string_view bytes, std::string& out) {
  const Table& t = table();
  for (char c : bytes) out += t.text[static_cast<uint8_t>(c)];
}

void decode_token(std::string_view token, std::string& out) {
  const Table& t = table();
  const size_t start = out.size();
  for (size_t i = 0; i < token.size();) {
    const utf8::Step st = utf8::next(token, i);
    const int b = st.kind == utf8::Step::kChar && st.cp < 512 ? t.byte[st.cp] : -1;
    if (b < 0) {
      out.resize(start);
      out.append(token);
      return;
    }
    out += static_cast<char>(b);
    i += st.len;
  }
}

}  // namespace qllm::byte_level
