// UTF-8 repair and streaming, the byte-level table, and the regex rewrite for
// Oniguruma's \s.
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace {

namespace utf8 = qllm::utf8;
const std::string R = "\xEF\xBF\xBD";

TEST(Utf8, LossyFollowsMaximalSubparts) {
  // Same results as Rust's String::from_utf8_lossy.
  EXPECT_EQ(utf8::to_lossy("abc"), "abc");
  EXPECT_EQ(utf8::to_lossy("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(utf8::to_lossy("\x80"), R);
  EXPECT_EQ(utf8::to_lossy("\xE2\x82x"), R + "x");               // one for E2 82
  EXPECT_EQ(utf8::to_lossy("\xF0\x9F\x98"), R);                  // incomplete at the end
  EXPECT_EQ(utf8::to_lossy("\xED\xA0\x80"), R + R + R);          // surrogate: each byte
  EXPECT_EQ(utf8::to_lossy("\xC0\xAF"), R + R);                  // overlong
  EXPECT_EQ(utf8::to_lossy("\xF4\x90\x80\x80"), R + R + R + R);  // above U+10FFFF
  EXPECT_EQ(utf8::to_lossy("\xFF\xFEok"), R + R + "ok");
  EXPECT_FALSE(utf8::is_valid("\xE2\x82"));
  EXPECT_TRUE(utf8::is_valid("\xF0\x9F\x98\x80"));
}

TEST(Utf8, StreamEqualsWhole) {
  const std::string inputs[] = {"a\xF0\x9F\x98\x80z", "\xE2\x82x\xE2\x82\xAC", "\xF0\x9F\x98",
                                "\xFF\xC3\xA9\x80", "plain"};
  for (const std::string& in : inputs) {
    for (size_t cut = 0; cut <= in.size(); ++cut) {
      utf8::LossyStream s;
      std::string out;
      s.push(in.substr(0, cut), out);
      ASSERT_TRUE(utf8::is_valid(out));
      s.push(in.substr(cut), out);
      s.finish(out);
      EXPECT_EQ(out, utf8::to_lossy(in)) << "cut " << cut;
    }
  }
  utf8::LossyStream s;
  std::string out;
  s.push("\xF0\x9F", out);
  EXPECT_EQ(out, "");
  EXPECT_TRUE(s.pending());
  s.push("\x98\x80", out);
  EXPECT_EQ(out, "\xF0\x9F\x98\x80");
  EXPECT_FALSE(s.pending());
}

TEST(ByteLevel, TableRoundTrips) {
  EXPECT_EQ(qllm::byte_level::char_of(' '), "\xC4\xA0");  // Ġ
  EXPECT_EQ(qllm::byte_level::char_of('a'), "a");
  EXPECT_EQ(qllm::byte_level::char_of('\n'), "\xC4\x8A");  // Ċ
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string mapped, back;
  qllm::byte_level::encode(all, mapped);
  qllm::byte_level::decode_token(mapped, back);
  EXPECT_EQ(back, all);
  back.clear();
  qllm::byte_level::decode_token("<|im_start|> ", back);  // ' ' is not in the table
  EXPECT_EQ(back, "<|im_start|> ");
}

TEST(Regex, OnigurumaSpaces) {
  const auto re = qllm::Regex::compile(R"(\s+)");
  // U+180E is not White_Space (PCRE2's \s would take it); U+0085 and U+3000 are.
  EXPECT_TRUE(re.find_all("a\xE1\xA0\x8E"
                          "b")
                  .empty());
  EXPECT_EQ(re.find_all("a\xC2\x85"
                        "b")
                .size(),
            1u);
  EXPECT_EQ(re.find_all("a\xE3\x80\x80"
                        "b")
                .size(),
            1u);
  const auto cls = qllm::Regex::compile(R"([^\s\p{L}]+)");
  EXPECT_EQ(cls.find_all("\xE1\xA0\x8E").size(), 1u);
  EXPECT_EQ(qllm::translate_oniguruma_spaces(R"(a\\s)"),
            R"(a\\s)");                                     // an escaped backslash, then s
  const auto bracket = qllm::Regex::compile(R"([\]\s]+)");  // "]" or a space
  ASSERT_EQ(bracket
                .find_all("a] \xE3\x80\x80"
                          "b")
                .size(),
            1u);
  EXPECT_EQ(bracket
                .find_all("a] \xE3\x80\x80"
                          "b")[0]
                .end,
            6u);
  const auto lit = qllm::Regex::compile("a.b", /*literal=*/true);
  EXPECT_EQ(lit.find_all("axb a.b").size(), 1u);
}

}  // namespace
