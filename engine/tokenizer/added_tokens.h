// Added tokens of tokenizer.json ("added_tokens"): special tokens such as
// <|im_start|> or <s>, and ordinary added tokens. They are found in the text
// before anything else, leftmost-longest like Hugging Face's Aho-Corasick
// matcher: tokens with normalized=false in the raw text, the others in the
// normalized text (matching their normalized form). single_word, lstrip and
// rstrip are honoured. Ids follow Hugging Face's rule: a token already in the
// model vocabulary keeps that id, a new one takes the next id after the model.
#pragma once

#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/json_util.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qllm {

class Normalizer;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, normalized = true, single_word = false;
};

// A piece of text, or an added token found in it.
struct TextSegment {
  std::string_view text;  // empty when `id` is set
  int32_t id = -1;        // >= 0 for an added token
  size_t offset = 0;      // byte offset of `text` in the searched string
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // Reads "added_tokens" (may be null/absent).
  AddedVocabulary(const tokjson::Json* list, const tokjson::Where& w, const BpeModel& model,
                  const Normalizer* normalizer);

  // Cuts `text` at the tokens that match the raw text (normalized == false)
  // or, with `normalized_side`, those that match normalized text.
  std::vector<TextSegment> split(std::string_view text, bool normalized_side) const;

  std::optional<int32_t> token_to_id(std::string_view content) const;
  const AddedToken* by_id(int32_t id) const;
  bool is_special(int32_t id) const;
  int32_t max_id() const { return max_id_; }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over the patterns of one side.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
      int32_t id = -1;                                // token id ending here
    };
    std::vector<Node> nodes{Node{}};
    std::array<bool, 256> first{};
    void insert(std::string_view pattern, int32_t id);
    // Longest pattern starting at `pos`: (length, id), length 0 if none.
    std::pair<size_t, int32_t> longest_at(std::string_view text, size_t pos) const;
  };

  std::vector<AddedToken> tokens_;                   // one per id, in file order
  std::unordered_map<int32_t, size_t> index_by_id_;  // id -> tokens_ index
  TokenMap by_content_;
  Trie raw_, normalized_;
  int32_t max_id_ = -1;
};

}  // namespace qllm
