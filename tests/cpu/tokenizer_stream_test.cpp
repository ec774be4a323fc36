// StreamDecoder: only complete UTF-8 characters come out, nothing is lost or
// duplicated, and the pieces add up to Tokenizer::decode of all ids.
#include "engine/common/error.h"
#include "engine/tokenizer/generated.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/cpu/tokenizer_test_util.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include <random>

namespace {

using qllm::StreamDecoder;
using qllm::Tokenizer;
using Ids = std::vector<int32_t>;

const std::string kFffd = "\xEF\xBF\xBD";

// Pushes ids one by one; returns what each push gave, then the flush.
std::vector<std::string> stream(const Tokenizer& tok, const Ids& ids, bool skip = true) {
  StreamDecoder dec(tok, skip);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(dec.push(id));
  out.push_back(dec.flush());
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

// The generated tokenizer: ids 0..255 are the byte tokens of bytes 0..255.
const Tokenizer& byte_level() {
  static const Tokenizer tok =
      Tokenizer::from_json(qllm::make_generated_tokenizer(1024).tokenizer_json, "generated");
  return tok;
}

TEST(StreamDecoder, EmojiSplitAcrossByteLevelTokens) {
  const Ids grin = {0xF0, 0x9F, 0x98, 0x80, 'a'};  // 😀 a
  const auto parts = stream(byte_level(), grin);
  EXPECT_EQ(parts[0], "");
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(parts[2], "");
  EXPECT_EQ(parts[3], "\xF0\x9F\x98\x80");
  EXPECT_EQ(parts[4], "a");
  EXPECT_EQ(parts[5], "");
  EXPECT_EQ(join(parts), byte_level().decode(grin));
}

TEST(StreamDecoder, InvalidBytesBecomeReplacementWhenCertain) {
  // 0xFF can never start a character: U+FFFD at once.
  EXPECT_EQ(stream(byte_level(), {0xFF})[0], kFffd);
  // A lead byte waits; the next ASCII byte proves it incomplete.
  const auto parts = stream(byte_level(), {0xE2, 0x82, 'x'});
  EXPECT_EQ(parts[0], "");
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(parts[2], kFffd + "x");  // one U+FFFD for the maximal subpart E2 82
  // An incomplete character at the end becomes U+FFFD on flush.
  const auto tail = stream(byte_level(), {'o', 'k', 0xF0, 0x9F});
  EXPECT_EQ(tail[0] + tail[1], "ok");
  EXPECT_EQ(tail[2] + tail[3], "");
  EXPECT_EQ(tail[4], kFffd);
  EXPECT_EQ(join(tail), byte_level().decode(Ids{'o', 'k', 0xF0, 0x9F}));
}

TEST(StreamDecoder, SpecialTokensAndFlushStartsOver) {
  const Tokenizer& tok = byte_level();
  const int32_t eos = 1021;
  EXPECT_EQ(join(stream(tok, {'h', 'i', eos}, /*skip=*/true)), "hi");
  EXPECT_EQ(join(stream(tok, {'h', 'i', eos}, /*skip=*/false)), "hi<|endoftext|>");
  // Llama-style: the first token's leading space is dropped, once per sequence.
  const Tokenizer llama = Tokenizer::from_json(qllm::test::llama_like_tokenizer(true).dump());
  const Ids ids = llama.encode("ab hello");
  StreamDecoder dec(llama);
  std::string first;
  for (int32_t id : ids) first += dec.push(id);
  first += dec.flush();
  EXPECT_EQ(first, "ab hello");
  std::string second;
  for (int32_t id : ids) second += dec.push(id);
  EXPECT_EQ(second + dec.flush(), "ab hello");
}

TEST(StreamDecoder, ByteFallbackRuns) {
  const Tokenizer tok = Tokenizer::from_json(qllm::test::llama_like_tokenizer(false).dump());
  auto b = [](int x) { return 3 + x; };
  // € as three byte tokens, then a word: the run is held until it ends.
  const Ids ids = {b(0xE2), b(0x82), b(0xAC), 267};
  const auto parts = stream(tok, ids);
  EXPECT_EQ(parts[0] + parts[1] + parts[2], "");
  EXPECT_EQ(parts[3], "\xE2\x82\xAC a");
  EXPECT_EQ(join(parts), tok.decode(ids));
  // A run that can no longer be UTF-8 comes out at once, one U+FFFD per byte.
  const auto bad = stream(tok, {b(0xE2), b(0x41), b(0x42), 267});
  EXPECT_EQ(bad[0], "");
  EXPECT_EQ(bad[1], kFffd + kFffd);
  EXPECT_EQ(bad[2], kFffd);
  EXPECT_EQ(join(bad), tok.decode(Ids{b(0xE2), b(0x41), b(0x42), 267}));
}

TEST(StreamDecoder, UnknownIdThrowsNamingIt) {
  StreamDecoder dec(byte_level());
  try {
    dec.push(5000);
    FAIL() << "no exception";
  } catch (const qllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("5000"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dec.push(-1), qllm::Error);
  EXPECT_THROW(byte_level().decode(Ids{1, 2, 1024}), qllm::Error);
  EXPECT_THROW(byte_level().id_to_token(1024), qllm::Error);
}

// Random id sequences for every real tokenizer: each piece is valid UTF-8 and
// the pieces add up to decode().
void random_sequences(const Tokenizer& tok, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> any(0, tok.vocab_size() - 1);
  const Ids text_ids = tok.encode(
      "\xF0\x9F\x9A\x80\xF0\x9F\x94\xA5 \xE4\xBD\xA0\xE5\xA5\xBD \xE0\xA4\xA8\xE0\xA4\xAE "
      "\xE9\xBE\x98 caf\xC3\xA9");
  for (int round = 0; round < 200; ++round) {
    Ids ids;
    const int n = 1 + static_cast<int>(rng() % 30);
    for (int k = 0; k < n; ++k) {
      const int32_t id = rng() % 2 ? text_ids[rng() % text_ids.size()] : any(rng);
      try {
        tok.id_to_token(id);
        ids.push_back(id);
      } catch (const qllm::Error&) {  // a hole in the vocabulary
      }
    }
    for (bool skip : {true, false}) {
      const auto parts = stream(tok, ids, skip);
      for (const auto& p : parts) ASSERT_TRUE(qllm::utf8::is_valid(p));
      ASSERT_EQ(join(parts), tok.decode(ids, skip)) << "round " << round;
    }
  }
}

TEST(StreamDecoder, RandomSequencesGenerated) { random_sequences(byte_level(), 1); }

TEST(StreamDecoder, RandomSequencesRealTokenizers) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/qwen2/qwen3/tokenizer.json");
  const auto dir = qllm::test::shared_data_dir() / "tokenizers";
  uint32_t seed = 10;
  for (const char* f : {"qwen2/qwen3/tokenizer.json", "mixtral/tokenizer.json",
                        "llama2/tokenizer.json", "olmoe/tokenizer.json", "gpt2/tokenizer.json"}) {
    if (!std::filesystem::exists(dir / f)) continue;
    SCOPED_TRACE(f);
    random_sequences(Tokenizer::from_file(dir / f), seed++);
  }
}

TEST(StreamDecoder, CjkAndEmojiInRealTokenizers) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/llama2/tokenizer.json");
  const auto dir = qllm::test::shared_data_dir() / "tokenizers";
  // 龘 is not in Llama's vocabulary: three byte tokens; the emoji likewise.
  const std::string text = "\xE9\xBE\x98 \xF0\x9F\xA4\x96 \xE4\xBD\xA0\xE5\xA5\xBD";
  for (const char* f : {"llama2/tokenizer.json", "qwen2/qwen3/tokenizer.json"}) {
    if (!std::filesystem::exists(dir / f)) continue;
    const Tokenizer tok = Tokenizer::from_file(dir / f);
    const Ids ids = tok.encode(text);
    ASSERT_GT(ids.size(), 6u) << f;  // characters split over several tokens
    const auto parts = stream(tok, ids);
    int empty = 0;
    for (const auto& p : parts) {
      EXPECT_TRUE(qllm::utf8::is_valid(p)) << f;
      empty += p.empty() ? 1 : 0;
    }
    EXPECT_GT(empty, 2) << f << ": partial characters must be held back";
    EXPECT_EQ(join(parts), text) << f;
  }
}

}  // namespace
