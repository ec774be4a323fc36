// The generated tokenizer of synthetic checkpoints: size, special tokens,
// determinism, round trips, and the committed copy Hugging Face was checked
// against (tests/data/tokenizer/generated_1024.*; tokenizer_golden_test holds
// its ids from Hugging Face). Set QLLM_UPDATE_GOLDENS=1 to rewrite the copy,
// then run tools/gen_tokenizer_goldens.py.
#include "engine/common/error.h"
#include "engine/tokenizer/generated.h"
#include "engine/tokenizer/generated_corpus.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace {

using qllm::GeneratedTokenizerFiles;
using qllm::make_generated_tokenizer;
using qllm::Tokenizer;

const char* const kTexts[] = {
    "",
    "Hello world",
    "The baker opened his door before anyone was awake.",
    "  spaces   and\ttabs\n\nnew lines  ",
    "Numbers 0 12 345 6789 and 3.14!",
    "def count_words(text):\n    return len(text.split())\n",
    "Unicode: caf\xC3\xA9, \xE4\xBD\xA0\xE5\xA5\xBD, \xF0\x9F\x98\x80, \xE0\xA4\xA8\xE0\xA4\xAE",
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n",
    "<|endoftext|>",
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void check_basics(int vocab_size) {
  SCOPED_TRACE("vocab_size " + std::to_string(vocab_size));
  const GeneratedTokenizerFiles files = make_generated_tokenizer(vocab_size);
  EXPECT_EQ(files.vocab_size, vocab_size);
  EXPECT_EQ(files.bos_id, vocab_size - 3);
  EXPECT_EQ(files.eos_id, vocab_size - 3);
  const Tokenizer tok = Tokenizer::from_json(files.tokenizer_json, "generated");
  EXPECT_EQ(tok.vocab_size(), vocab_size);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), vocab_size - 3);
  EXPECT_EQ(tok.token_to_id("<|im_start|>"), vocab_size - 2);
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), vocab_size - 1);
  for (int id = vocab_size - 3; id < vocab_size; ++id) EXPECT_TRUE(tok.is_special(id));
  EXPECT_FALSE(tok.is_special(0));
  for (const char* text : kTexts) {
    const auto ids = tok.encode(text);
    for (int32_t id : ids) ASSERT_LT(id, vocab_size);
    EXPECT_EQ(tok.decode(ids, /*skip_special=*/false), text);
  }
  const auto chat = tok.encode("<|im_start|>user\nHi<|im_end|>");
  ASSERT_GE(chat.size(), 3u);
  EXPECT_EQ(chat.front(), vocab_size - 2);
  EXPECT_EQ(chat.back(), vocab_size - 1);
  EXPECT_EQ(tok.decode(chat), "user\nHi");

  const auto config = nlohmann::json::parse(files.tokenizer_config_json);
  EXPECT_EQ(config.at("bos_token"), "<|endoftext|>");
  EXPECT_EQ(config.at("eos_token"), "<|endoftext|>");
  EXPECT_EQ(config.at("pad_token"), "<|endoftext|>");
  EXPECT_EQ(config.at("tokenizer_class"), "PreTrainedTokenizerFast");
  EXPECT_NE(config.at("chat_template").get<std::string>().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(config.at("added_tokens_decoder").size(), 3u);
}

TEST(GeneratedTokenizer, SmallestHasOnlyBytes) {
  check_basics(259);
  const Tokenizer tok = Tokenizer::from_json(make_generated_tokenizer(259).tokenizer_json);
  EXPECT_EQ(tok.encode("abc").size(), 3u);  // no merges at all
}

TEST(GeneratedTokenizer, TypicalSizes) {
  check_basics(300);
  check_basics(1024);
  check_basics(4096);  // beyond what the corpus yields: filler merges
}

TEST(GeneratedTokenizer, LargeVocabulary) { check_basics(32000); }

TEST(GeneratedTokenizer, Deterministic) {
  const auto a = make_generated_tokenizer(777), b = make_generated_tokenizer(777);
  EXPECT_EQ(a.tokenizer_json, b.tokenizer_json);
  EXPECT_EQ(a.tokenizer_config_json, b.tokenizer_config_json);
}

TEST(GeneratedTokenizer, MergesCompressTheCorpus) {
  const Tokenizer small = Tokenizer::from_json(make_generated_tokenizer(259).tokenizer_json);
  const Tokenizer big = Tokenizer::from_json(make_generated_tokenizer(2048).tokenizer_json);
  const std::string corpus = qllm::generated_tokenizer_corpus();
  EXPECT_LT(big.encode(corpus).size() * 3, small.encode(corpus).size());
}

TEST(GeneratedTokenizer, RejectsTooSmall) {
  EXPECT_THROW(make_generated_tokenizer(258), qllm::Error);
  EXPECT_THROW(make_generated_tokenizer(0), qllm::Error);
}

TEST(GeneratedTokenizer, MatchesCommittedCopy) {
  const auto dir = qllm::test::data_dir() / "tokenizer";
  const GeneratedTokenizerFiles files = make_generated_tokenizer(1024);
  if (const char* update = std::getenv("QLLM_UPDATE_GOLDENS"); update != nullptr && *update) {
    std::ofstream(dir / "generated_1024.tokenizer.json", std::ios::binary) << files.tokenizer_json;
    std::ofstream(dir / "generated_1024.tokenizer_config.json", std::ios::binary)
        << files.tokenizer_config_json;
    GTEST_SKIP() << "rewrote " << dir / "generated_1024.*";
  }
  EXPECT_EQ(read_file(dir / "generated_1024.tokenizer.json"), files.tokenizer_json)
      << "make_generated_tokenizer changed: rerun with QLLM_UPDATE_GOLDENS=1, then "
         "tools/gen_tokenizer_goldens.py";
  EXPECT_EQ(read_file(dir / "generated_1024.tokenizer_config.json"), files.tokenizer_config_json);
}

}  // namespace
