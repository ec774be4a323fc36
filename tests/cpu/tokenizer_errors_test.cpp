// Malformed tokenizer.json files: a qllm::Error whose message names the file,
// the JSON key and the problem; never a crash.
#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/cpu/tokenizer_test_util.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include <fstream>

namespace {

using nlohmann::json;
using qllm::Tokenizer;

// The message of the qllm::Error that loading `text` throws.
std::string load_error(const std::string& text) {
  try {
    Tokenizer::from_json(text, "bad/tokenizer.json");
  } catch (const qllm::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a qllm::Error: ") + e.what();
  }
  return "no error";
}

void expect_error(const json& j, std::initializer_list<const char*> parts) {
  const std::string msg = load_error(j.dump());
  for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
  EXPECT_NE(msg.find("bad/tokenizer.json"), std::string::npos) << msg;
}

json good() { return qllm::test::llama_like_tokenizer(false); }

TEST(TokenizerErrors, NotJson) {
  const std::string msg = load_error("{\"model\": {\"type\": \"BPE\",");
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(load_error("").find("not valid JSON"), std::string::npos);
  EXPECT_NE(load_error("[1, 2]").find("expected an object"), std::string::npos);
}

TEST(TokenizerErrors, MissingOrWrongModel) {
  json j = good();
  j.erase("model");
  expect_error(j, {"model", "missing"});
  j = good();
  j["model"]["type"] = "WordPiece";
  expect_error(j, {"model.type", "WordPiece", "only BPE"});
  j = good();
  j["model"].erase("vocab");
  expect_error(j, {"model.vocab", "missing"});
  j = good();
  j["model"]["vocab"] = json::array({1, 2});
  expect_error(j, {"model.vocab", "expected an object"});
  j = good();
  j["model"]["vocab"]["a"] = "seven";
  expect_error(j, {"model.vocab", "\"a\"", "expected an id"});
  j = good();
  j["model"]["unk_token"] = "<nope>";
  expect_error(j, {"model.unk_token", "<nope>"});
  j = good();
  j["model"]["dropout"] = 0.1;
  expect_error(j, {"model.dropout"});
}

TEST(TokenizerErrors, BadMerges) {
  json j = good();
  j["model"]["merges"].push_back("a zz");
  expect_error(j, {"model.merges[8]", "unknown token \"zz\""});
  j = good();
  j["model"]["merges"].push_back(json::array({"q", "a"}));
  expect_error(j, {"model.merges[8]", "unknown token \"q\""});
  j = good();
  j["model"]["merges"].push_back("b c");  // both known, "bc" is not
  expect_error(j, {"model.merges[8]", "unknown token \"bc\""});
  j = good();
  j["model"]["merges"].push_back("a b c");
  expect_error(j, {"model.merges[8]", "two tokens"});
  j = good();
  j["model"]["merges"].push_back(7);
  expect_error(j, {"model.merges[8]", "expected a string"});
  j = good();
  j["model"]["merges"] = "a b";
  expect_error(j, {"model.merges", "expected an array"});
}

TEST(TokenizerErrors, UnsupportedComponentsAreNamed) {
  json j = good();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_error(j, {"normalizer.type", "unsupported normalizer \"Lowercase\""});
  j = good();
  j["normalizer"]["normalizers"][1] = {{"type", "BertNormalizer"}};
  expect_error(j, {"normalizer.normalizers[1].type", "BertNormalizer"});
  j = good();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_error(j, {"pre_tokenizer.type", "unsupported pre_tokenizer \"Whitespace\""});
  j = good();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, {"decoder.type", "unsupported decoder \"WordPiece\""});
  j = good();
  j["post_processor"] = {{"type", "Unknown"}};
  expect_error(j, {"post_processor.type", "Unknown"});
  j = good();
  j["normalizer"] = {{"kind", "NFC"}};
  expect_error(j, {"normalizer.type", "missing"});
}

TEST(TokenizerErrors, BadValues) {
  json j = good();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(j, {"pre_tokenizer.pattern", "(unclosed", "does not compile"});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
  expect_error(j, {"pre_tokenizer.behavior", "Sideways"});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", "a"}, {"behavior", "Isolated"}};
  expect_error(j, {"pre_tokenizer.pattern", "expected an object"});
  j = good();
  j["added_tokens"][0]["content"] = 5;
  expect_error(j, {"added_tokens[0].content", "expected a string"});
  j = good();
  j["added_tokens"] = json::object();
  expect_error(j, {"added_tokens", "expected an array"});
  j = good();
  j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<bos>";
  expect_error(j, {"post_processor.special_tokens", "<bos>"});
  j = good();
  j["decoder"]["decoders"][3]["start"] = "one";
  expect_error(j, {"decoder.decoders[3].start", "expected an integer"});
  j = good();
  j["version"] = "2.0";
  expect_error(j, {"version", "\"1.0\""});
  j = good();
  j["normalizer"]["normalizers"][0]["prepend"] = nullptr;
  expect_error(j, {"normalizer.normalizers[0].prepend", "expected a string"});
}

TEST(TokenizerErrors, Files) {
  const auto dir = qllm::test::temp_dir("tokenizer-errors");
  try {
    Tokenizer::from_file(dir);
    FAIL() << "no exception";
  } catch (const qllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer.json"), std::string::npos) << e.what();
  }
  try {
    Tokenizer::from_file(dir / "missing.json");
    FAIL() << "no exception";
  } catch (const qllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "tokenizer.json") << "{\"model\": 3}";
  try {
    Tokenizer::from_file(dir);
    FAIL() << "no exception";
  } catch (const qllm::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model: expected an object"), std::string::npos) << msg;
  }
  std::ofstream(dir / "tokenizer.json") << good().dump();
  EXPECT_EQ(Tokenizer::from_file(dir).encode("ab").size(), 1u);
}

// Every truncation of a valid file must fail cleanly (never crash).
TEST(TokenizerErrors, TruncatedFilesFailCleanly) {
  const std::string text = good().dump();
  for (size_t n = 0; n < text.size(); n += 97) {
    const std::string msg = load_error(text.substr(0, n));
    EXPECT_EQ(msg.find("not a qllm::Error"), std::string::npos) << msg;
    EXPECT_NE(msg, "no error");
  }
}

}  // namespace
