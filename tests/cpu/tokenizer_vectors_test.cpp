// The reference vectors shipped with the real tokenizer files (shared data,
// see its SOURCES.md), each produced by Hugging Face or SentencePiece:
//   gpt2/ggml-prompts-gpt-2.txt, olmoe/ggml-prompts-gpt-neox.txt
//       "text => ids", no special tokens;
//   qwen2/qwen2.5/golden_tokens.qwen2.5-0.5b.hf-tokenizers.json
//       [{"text", "ids"}], no special tokens;
//   mixtral/mistral_common_samples/no_tools.{text_v1.txt,tokens_v1.json}
//       a chat rendered by mistral-common: the text is the pieces joined, so
//       "▁" is a space except right after <s> and </s>, where it is the
//       normalizer's prefix and not part of the text.
#include "engine/tokenizer/tokenizer.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using qllm::Tokenizer;

std::filesystem::path tokenizers_dir() { return qllm::test::shared_data_dir() / "tokenizers"; }

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) ids.push_back(std::stoi(item));
  return ids;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

void check_ggml_prompts(const std::string& tokenizer_rel, const std::string& prompts_rel) {
  const Tokenizer tok = Tokenizer::from_file(tokenizers_dir() / tokenizer_rel);
  std::ifstream in(tokenizers_dir() / prompts_rel);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const size_t sep = line.rfind(" => ");
    ASSERT_NE(sep, std::string::npos) << line;
    const std::string text = line.substr(0, sep);
    const auto want = parse_ids(line.substr(sep + 4));
    EXPECT_EQ(tok.encode(text), want) << "text: " << text;
    EXPECT_EQ(tok.decode(want), text);
    ++n;
  }
  EXPECT_EQ(n, 100);
}

TEST(TokenizerVectors, Gpt2GgmlPrompts) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/gpt2/ggml-prompts-gpt-2.txt");
  check_ggml_prompts("gpt2/tokenizer.json", "gpt2/ggml-prompts-gpt-2.txt");
}

TEST(TokenizerVectors, OlmoeGgmlNeoxPrompts) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/olmoe/ggml-prompts-gpt-neox.txt");
  check_ggml_prompts("olmoe/tokenizer.json", "olmoe/ggml-prompts-gpt-neox.txt");
}

TEST(TokenizerVectors, Qwen25GoldenTokens) {
  QLLM_REQUIRE_SHARED_DATA(
      "tokenizers/qwen2/qwen2.5/golden_tokens.qwen2.5-0.5b.hf-tokenizers.json");
  const auto dir = tokenizers_dir() / "qwen2" / "qwen2.5";
  const auto golden =
      nlohmann::json::parse(read_file(dir / "golden_tokens.qwen2.5-0.5b.hf-tokenizers.json"));
  ASSERT_EQ(golden.size(), 51u);
  // The Qwen3 file has the same base vocabulary (its merges are stored as
  // pairs instead of strings): both must give these ids.
  for (const char* file : {"qwen2/qwen2.5/tokenizer.json", "qwen2/qwen3/tokenizer.json"}) {
    if (!std::filesystem::exists(tokenizers_dir() / file)) continue;
    const Tokenizer tok = Tokenizer::from_file(tokenizers_dir() / file);
    for (const auto& c : golden) {
      const std::string text = c.at("text");
      const auto want = c.at("ids").get<std::vector<int32_t>>();
      EXPECT_EQ(tok.encode(text), want) << file << ": " << nlohmann::json(text).dump();
      EXPECT_EQ(tok.decode(want, /*skip_special=*/false), text) << file;
    }
  }
}

TEST(TokenizerVectors, MistralCommonChat) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/mixtral/mistral_common_samples/no_tools.tokens_v1.json");
  const auto dir = tokenizers_dir() / "mixtral";
  const Tokenizer tok = Tokenizer::from_file(dir);  // a folder holding tokenizer.json
  const std::string pieces = read_file(dir / "mistral_common_samples" / "no_tools.text_v1.txt");
  const auto want =
      nlohmann::json::parse(read_file(dir / "mistral_common_samples" / "no_tools.tokens_v1.json"))
          .at("tokens")
          .get<std::vector<int32_t>>();
  ASSERT_EQ(want.size(), 118u);
  const std::string space = "\xE2\x96\x81";
  std::string text = replace_all(pieces, "<s>" + space, "<s>");
  text = replace_all(text, "</s>" + space, "</s>");
  text = replace_all(text, space, " ");
  EXPECT_EQ(tok.encode(text), want);
  ASSERT_EQ(text.rfind("<s>", 0), 0u);
  EXPECT_EQ(tok.encode(text.substr(3), /*add_special=*/true), want);  // <s> from the template
  // Decoding keeps the "▁" after the special tokens as spaces: the pieces.
  EXPECT_EQ(tok.decode(want, /*skip_special=*/false), replace_all(pieces, space, " "));
}

TEST(TokenizerVectors, VocabularySizesAndSpecialTokens) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/qwen2/qwen3/tokenizer.json");
  const auto dir = tokenizers_dir();
  const Tokenizer qwen = Tokenizer::from_file(dir / "qwen2" / "qwen3");
  EXPECT_EQ(qwen.vocab_size(), 151669);
  EXPECT_EQ(qwen.token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(qwen.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(qwen.token_to_id("<|im_end|>"), 151645);
  EXPECT_TRUE(qwen.is_special(151644));
  EXPECT_FALSE(qwen.is_special(151667));  // <think> is an added token, not special
  EXPECT_EQ(qwen.id_to_token(151667), "<think>");
  EXPECT_EQ(qwen.id_to_token(9707), "Hello");
  EXPECT_EQ(qwen.token_to_id("\xC4\xA0world"), 1879);  // "Ġworld"
  if (std::filesystem::exists(dir / "olmoe" / "tokenizer.json")) {
    const Tokenizer olmoe = Tokenizer::from_file(dir / "olmoe" / "tokenizer.json");
    EXPECT_EQ(olmoe.vocab_size(), 50280);
    EXPECT_EQ(olmoe.token_to_id("<|endoftext|>"), 50279);
    EXPECT_TRUE(olmoe.is_special(50279));
    EXPECT_TRUE(olmoe.is_special(1));       // <|padding|>
    EXPECT_FALSE(olmoe.is_special(50254));  // 24 spaces
    EXPECT_EQ(olmoe.encode(std::string(24, ' ')), std::vector<int32_t>{50254});
  }
  if (std::filesystem::exists(dir / "mixtral" / "tokenizer.json")) {
    const Tokenizer mixtral = Tokenizer::from_file(dir / "mixtral" / "tokenizer.json");
    EXPECT_EQ(mixtral.vocab_size(), 32000);
    EXPECT_EQ(mixtral.token_to_id("<s>"), 1);
    EXPECT_EQ(mixtral.encode("Hello", /*add_special=*/true).front(), 1);
    EXPECT_EQ(mixtral.id_to_token(3), "<0x00>");
  }
  if (std::filesystem::exists(dir / "gpt2" / "tokenizer.json")) {
    EXPECT_EQ(Tokenizer::from_file(dir / "gpt2" / "tokenizer.json").vocab_size(), 50257);
  }
}

}  // namespace
