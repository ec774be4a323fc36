// Every tokenizer against the ids and text Hugging Face `tokenizers` gives
// (tests/data/tokenizer/<name>.json, made by tools/gen_tokenizer_goldens.py):
// encode with and without special tokens, decode both ways, and stream
// decoding of the same ids.
#include "engine/tokenizer/tokenizer.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

struct GoldenSet {
  const char* name;
  bool shared;  // tokenizer file in the shared data (else tests/data/tokenizer)
};

json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << "cannot open " << p;
  return json::parse(in);
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

std::string stream_decode(const qllm::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  qllm::StreamDecoder dec(tok, skip);
  std::string out;
  for (int32_t id : ids) out += dec.push(id);
  return out + dec.flush();
}

// Decoding both ways, whole and streamed. A null golden marks a case where
// Hugging Face panics (Strip with stop > 0 on an empty text); qllm decodes it.
void check_decode(const qllm::Tokenizer& tok, const std::vector<int32_t>& ids, const json& skip,
                  const json& keep) {
  for (const bool skip_special : {true, false}) {
    const json& want = skip_special ? skip : keep;
    const std::string whole = tok.decode(ids, skip_special);
    EXPECT_EQ(stream_decode(tok, ids, skip_special), whole) << "stream, ids " << show(ids);
    if (!want.is_null()) {
      EXPECT_EQ(whole, want.get<std::string>())
          << "skip_special " << skip_special << ", ids " << show(ids);
    }
  }
}

class GoldenTest : public ::testing::TestWithParam<GoldenSet> {};

TEST_P(GoldenTest, MatchesHuggingFace) {
  const GoldenSet set = GetParam();
  const auto golden_path = qllm::test::data_dir() / "tokenizer" / (std::string(set.name) + ".json");
  const json golden = read_json(golden_path);
  const std::string source = golden.at("source");
  std::filesystem::path tok_path;
  if (set.shared) {
    QLLM_REQUIRE_SHARED_DATA("tokenizers/" + source);
    tok_path = qllm::test::shared_data_dir() / "tokenizers" / source;
  } else {
    tok_path = qllm::test::data_dir() / "tokenizer" / source;
  }
  const qllm::Tokenizer tok = qllm::Tokenizer::from_file(tok_path);

  int failures = 0;
  for (const json& c : golden.at("cases")) {
    if (failures > 8) break;
    const std::string text = c.at("text");
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    const auto ids_special = c.at("ids_special").get<std::vector<int32_t>>();
    const auto got = tok.encode(text);
    const auto got_special = tok.encode(text, /*add_special=*/true);
    EXPECT_EQ(got, ids) << "text " << json(text).dump() << "\n  want " << show(ids) << "\n  got  "
                        << show(got);
    EXPECT_EQ(got_special, ids_special) << "text (add_special) " << json(text).dump();
    check_decode(tok, ids_special, c.at("decoded"), c.at("decoded_keep_special"));
    failures += ::testing::Test::HasFailure() ? 1 : 0;
  }
  for (const json& c : golden.at("decode_cases")) {
    check_decode(tok, c.at("ids").get<std::vector<int32_t>>(), c.at("skip_special"),
                 c.at("keep_special"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, GoldenTest,
    ::testing::Values(GoldenSet{"gpt2", true}, GoldenSet{"olmoe", true}, GoldenSet{"qwen3", true},
                      GoldenSet{"qwen2.5", true}, GoldenSet{"mixtral", true},
                      GoldenSet{"llama2", true}, GoldenSet{"feature_metaspace", false},
                      GoldenSet{"feature_split", false}, GoldenSet{"decoders_bytelevel", false},
                      GoldenSet{"decoders_metaspace", false}, GoldenSet{"generated_1024", false}),
    [](const ::testing::TestParamInfo<GoldenSet>& p) {
      std::string n = p.param.name;
      for (char& ch : n)
        if (ch == '.') ch = '_';
      return n;
    });

}  // namespace
