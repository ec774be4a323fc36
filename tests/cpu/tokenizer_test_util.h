// Small tokenizer.json builders for the tokenizer tests.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace qllm::test {

// A Llama-style tokenizer: "▁" for spaces (Prepend + Replace normalizer),
// byte fallback tokens <0x00>..<0xFF>, <unk>/<s>/</s>, BOS added by a
// TemplateProcessing post-processor, and the Replace/ByteFallback/Fuse/Strip
// decoder. `merges_as_pairs` stores merges as ["a", "b"] instead of "a b".
inline nlohmann::json llama_like_tokenizer(bool merges_as_pairs) {
  using nlohmann::json;
  const std::string sp = "\xE2\x96\x81";  // ▁
  json vocab = json::object();
  int next = 0;
  for (const char* t : {"<unk>", "<s>", "</s>"}) vocab[t] = next++;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = next++;
  }
  const std::vector<std::string> pieces = {
      sp,   "a",       "b",  "c",  "h",    "e",     "l",          "o",       sp + "a",
      "ab", sp + "ab", "he", "ll", "hell", "hello", sp + "hello", "\xC3\xA9" /* é */};
  for (const auto& p : pieces) vocab[p] = next++;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {sp, "a"},  {"a", "b"},   {sp + "a", "b"}, {"h", "e"},
      {"l", "l"}, {"he", "ll"}, {"hell", "o"},   {sp, "hello"}};
  json m = json::array();
  for (const auto& [a, b] : merges) {
    if (merges_as_pairs)
      m.push_back(json::array({a, b}));
    else
      m.push_back(a + " " + b);
  }
  json added = json::array();
  for (int id = 0; id < 3; ++id) {
    const char* names[] = {"<unk>", "<s>", "</s>"};
    added.push_back({{"id", id},
                     {"content", names[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         json::array({{{"type", "Prepend"}, {"prepend", sp}},
                      {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"}, {"pattern", {{"String", sp}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", m}}}};
}

}  // namespace qllm::test
