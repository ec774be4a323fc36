// The BPE model of tokenizer.json (Hugging Face's models::bpe::BPE).
//
// A piece of pre-tokenized text is cut into characters (each a vocabulary
// token; unknown ones become byte tokens "<0xXX>" with byte_fallback, else the
// unk token, else nothing), then adjacent pairs are merged lowest merge rank
// first, leftmost first among equal ranks, until no listed pair is left.
// Results for short pieces are cached (the cache is thread-safe).
#pragma once

#include "engine/tokenizer/json_util.h"

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qllm {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Reads the "model" object of tokenizer.json (type BPE). Merges may be
  // stored as "a b" strings or ["a", "b"] pairs.
  BpeModel(const tokjson::Json& model, const tokjson::Where& w);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized piece.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr when no token has this id.
  const std::string* id_to_token(int32_t id) const;
  // Number of vocabulary entries (Hugging Face's get_vocab_size).
  size_t size() const { return vocab_.size(); }
  int32_t max_id() const { return static_cast<int32_t>(by_id_.size()) - 1; }
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void add_merge(std::string_view a, std::string_view b, int32_t rank, const tokjson::Where& w);
  void merge_word(std::string_view w, std::vector<int32_t>& out) const;

  TokenMap vocab_;
  std::vector<const std::string*> by_id_;  // into vocab_'s keys
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // "<0xXX>" tokens, -1 if absent
  std::optional<int32_t> unk_id_;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;

  static constexpr size_t kCacheCapacity = 10000;
  static constexpr size_t kCacheMaxPiece = 256;  // bytes
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace qllm
