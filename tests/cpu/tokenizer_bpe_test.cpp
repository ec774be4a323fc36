// The BPE model and pipeline on small hand-made tokenizer.json files: merge
// order, both stored forms of merges, byte fallback, unk, added tokens,
// post-processing. Expected ids were checked with Hugging Face tokenizers
// 0.23.3 on the same JSON.
#include "engine/tokenizer/tokenizer.h"
#include "tests/cpu/tokenizer_test_util.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace {

using nlohmann::json;
using qllm::Tokenizer;
using Ids = std::vector<int32_t>;

// Ids of llama_like_tokenizer(): <unk> 0, <s> 1, </s> 2, <0xXX> 3 + XX, then
// the pieces in order.
constexpr int32_t kSpace = 259, kSpaceA = 267, kSpaceAb = 269, kSpaceHello = 274, kEAcute = 275;
constexpr int32_t byte_id(int b) { return 3 + b; }

TEST(TokenizerBpe, MergesInBothForms) {
  const Tokenizer strings = Tokenizer::from_json(qllm::test::llama_like_tokenizer(false).dump());
  const Tokenizer pairs = Tokenizer::from_json(qllm::test::llama_like_tokenizer(true).dump());
  for (const char* text : {"hello ab", "ab hello", "aab b hello", "hellohello", ""}) {
    EXPECT_EQ(strings.encode(text), pairs.encode(text)) << text;
    EXPECT_EQ(strings.encode(text, true), pairs.encode(text, true)) << text;
  }
  EXPECT_EQ(strings.encode("hello ab"), (Ids{kSpaceHello, kSpaceAb}));
  EXPECT_EQ(strings.encode("ab hello"), (Ids{kSpaceAb, kSpaceHello}));
}

TEST(TokenizerBpe, ByteFallbackAndBos) {
  const Tokenizer tok = Tokenizer::from_json(qllm::test::llama_like_tokenizer(false).dump());
  EXPECT_EQ(tok.encode("hello", true), (Ids{1, kSpaceHello}));
  EXPECT_EQ(tok.encode("", true), (Ids{1}));
  EXPECT_EQ(tok.encode(""), Ids{});
  EXPECT_EQ(tok.encode("\xC3\xA9"), (Ids{kSpace, kEAcute}));  // é is in the vocabulary
  // € is not: its three UTF-8 bytes become byte tokens; z likewise.
  EXPECT_EQ(tok.encode("\xE2\x82\xAC z"),
            (Ids{kSpace, byte_id(0xE2), byte_id(0x82), byte_id(0xAC), kSpace, byte_id('z')}));
  EXPECT_EQ(tok.encode("a\xC3\xA9 b"), (Ids{kSpaceA, kEAcute, kSpace, 261}));
  EXPECT_EQ(tok.encode("<s>ab</s>", true), (Ids{1, 1, kSpaceAb, 2}));
  EXPECT_EQ(tok.decode(tok.encode("\xE2\x82\xAC z", true)), "\xE2\x82\xAC z");
  EXPECT_EQ(tok.decode(Ids{1, kSpaceAb, 2}), "ab");
  EXPECT_EQ(tok.decode(Ids{1, kSpaceAb, 2}, false), "<s> ab</s>");
  // A byte run that is not UTF-8: one U+FFFD per byte, as Hugging Face does.
  EXPECT_EQ(tok.decode(Ids{byte_id(0xE2), byte_id(0x82), kSpaceA}), "\xEF\xBF\xBD\xEF\xBF\xBD a");
}

TEST(TokenizerBpe, UnknownCharactersWithoutByteTokens) {
  json j = qllm::test::llama_like_tokenizer(false);
  j["model"]["byte_fallback"] = false;
  const Tokenizer fused = Tokenizer::from_json(j.dump());
  EXPECT_EQ(fused.encode("zz a"), (Ids{kSpace, 0, kSpaceA}));  // "zz" fused into one <unk>
  j["model"]["fuse_unk"] = false;
  const Tokenizer unfused = Tokenizer::from_json(j.dump());
  EXPECT_EQ(unfused.encode("zz a"), (Ids{kSpace, 0, 0, kSpaceA}));
  j["model"]["unk_token"] = nullptr;
  const Tokenizer dropped = Tokenizer::from_json(j.dump());
  EXPECT_EQ(dropped.encode("zz a"), (Ids{kSpace, kSpaceA}));  // unknown characters vanish
}

TEST(TokenizerBpe, MergeRankDecides) {
  // "abc" with merges (b c) before (a b): b+c merges first.
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"b c", "a b", "a bc"}}}}};
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("abc"), (Ids{5}));
  j["model"]["merges"] = {"a b", "b c"};
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("abc"), (Ids{3, 2}));
  // Without a decoder Hugging Face joins the tokens with spaces.
  EXPECT_EQ(Tokenizer::from_json(j.dump()).decode(Ids{0, 4, 5}), "a bc abc");
  // A pair listed twice keeps its last rank (Hugging Face builds a map).
  j["model"]["merges"] = {"a b", "b c", "a b"};
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("abc"), (Ids{0, 4}));
  // ignore_merges: a piece that is a token is taken whole.
  const json v2 = {{"a", 0}, {"b", 1}, {"ab", 2}, {"aab", 3}};
  json k = {{"model", {{"type", "BPE"}, {"vocab", v2}, {"merges", {"a b"}}}}};
  EXPECT_EQ(Tokenizer::from_json(k.dump()).encode("aab"), (Ids{0, 2}));
  k["model"]["ignore_merges"] = true;
  EXPECT_EQ(Tokenizer::from_json(k.dump()).encode("aab"), (Ids{3}));
}

TEST(TokenizerBpe, AddedTokensMatchLeftmostLongest) {
  json j = qllm::test::llama_like_tokenizer(false);
  auto add = [&](const char* content, bool special) {
    j["added_tokens"].push_back({{"id", 0},
                                 {"content", content},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", special}});
  };
  add("<|im|>", true);
  add("<|im|><|x|>", true);
  add("<|x|>", false);
  const Tokenizer tok = Tokenizer::from_json(j.dump());
  // Ids are assigned after the model vocabulary, in file order.
  const int32_t im = 276, imx = 277, x = 278;
  EXPECT_EQ(tok.token_to_id("<|im|>"), im);
  EXPECT_EQ(tok.token_to_id("<|im|><|x|>"), imx);
  EXPECT_EQ(tok.token_to_id("<|x|>"), x);
  EXPECT_EQ(tok.vocab_size(), 279);
  EXPECT_TRUE(tok.is_special(imx));
  EXPECT_FALSE(tok.is_special(x));
  EXPECT_EQ(tok.encode("<|im|><|x|><|x|>ab"), (Ids{imx, x, kSpaceAb}));
  EXPECT_EQ(tok.encode("ab<|im|>"), (Ids{kSpaceAb, im}));
  EXPECT_EQ(tok.decode(Ids{imx, x, kSpaceAb}), "<|x|> ab");  // the special one is skipped
  EXPECT_EQ(tok.id_to_token(kSpaceHello), "\xE2\x96\x81hello");
  EXPECT_EQ(tok.id_to_token(x), "<|x|>");
}

TEST(TokenizerBpe, InvalidUtf8InputIsRepaired) {
  const Tokenizer tok = Tokenizer::from_json(qllm::test::llama_like_tokenizer(false).dump());
  // A lone continuation byte becomes U+FFFD (EF BF BD), encoded as byte tokens.
  EXPECT_EQ(tok.encode("a\x80"), (Ids{kSpaceA, byte_id(0xEF), byte_id(0xBF), byte_id(0xBD)}));
}

// One tokenizer shared by several threads (the BPE cache is shared).
TEST(TokenizerBpe, ConcurrentEncoding) {
  const Tokenizer tok = Tokenizer::from_json(qllm::test::llama_like_tokenizer(false).dump());
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i)
    texts.push_back("hello ab " + std::string(static_cast<size_t>(i % 7), 'a') + " \xE2\x82\xAC " +
                    std::to_string(i));
  std::vector<Ids> want;
  for (const auto& t : texts) want.push_back(tok.encode(t));
  const Tokenizer fresh = Tokenizer::from_json(qllm::test::llama_like_tokenizer(false).dump());
  std::vector<std::thread> threads;
  std::vector<int> errors(4, 0);
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 50; ++round)
        for (size_t i = 0; i < texts.size(); ++i)
          errors[w] += fresh.encode(texts[(i + static_cast<size_t>(w)) % texts.size()]) !=
                       want[(i + static_cast<size_t>(w)) % texts.size()];
    });
  }
  for (auto& t : threads) t.join();
  for (int e : errors) EXPECT_EQ(e, 0);
}

}  // namespace
