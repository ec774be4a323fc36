// Hugging Face tokenizer.json tokenization: load, encode, decode, stream.
//
//   auto tok = qllm::Tokenizer::from_file("path/to/checkpoint");  // or .../tokenizer.json
//   std::vector<int32_t> ids = tok.encode("Hello world", /*add_special=*/true);
//   std::string text = tok.decode(ids);
//
// Encoding follows Hugging Face `tokenizers` step by step and gives the same
// ids: added tokens are cut out first (leftmost-longest), each remaining piece
// is normalized, pre-tokenized and encoded by the BPE model; with add_special
// the post-processor adds its special tokens (e.g. Mixtral's <s>). Text that is
// not valid UTF-8 is repaired first (each bad sequence becomes U+FFFD).
//
// Supported components (others are refused by name when loading): model BPE;
// normalizers NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Sequence;
// pre-tokenizers ByteLevel, Split, Metaspace, Digits, Sequence; post-processors
// TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence;
// decoders ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence.
// "truncation" and "padding" are ignored.
//
// A Tokenizer is immutable after loading, cheap to copy (copies share it) and
// safe to use from several threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

class DecodeState;

class Tokenizer {
 public:
  // Loads a tokenizer.json file, or the tokenizer.json inside a checkpoint
  // folder. Throws qllm::Error naming the file, the JSON key and the problem.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  // Parses tokenizer.json text; `name` is used in error messages.
  static Tokenizer from_json(std::string_view json, std::string_view name = "tokenizer.json");

  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;

  // Text of `ids` (Hugging Face's decode). Special tokens are left out when
  // `skip_special`. An id with no token throws qllm::Error naming it.
  std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;

  // One past the largest id (model vocabulary and added tokens).
  int vocab_size() const;
  // The id of a token's text (added tokens first, then the model vocabulary).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // A token's text as stored in the vocabulary (byte-level or "▁" form).
  // Throws qllm::Error for an id with no token.
  std::string_view id_to_token(int32_t id) const;
  // True for added tokens marked special (skipped by decode(skip_special)).
  bool is_special(int32_t id) const;

  struct Impl;

 private:
  Tokenizer() = default;  // made by from_file / from_json
  std::shared_ptr<const Impl> impl_;
  friend class StreamDecoder;
};

// Incremental decoding for streaming generated text: push one id at a time and
// get only complete UTF-8 characters back (an incomplete character is held
// until the ids that complete it arrive; bytes that can no longer form a
// character become U+FFFD). The pieces returned by push() and flush() add up to
// exactly Tokenizer::decode of all ids pushed. Text-level effects of the
// decoder apply to the stream as a whole (e.g. Llama/Mistral drop the leading
// space of the first token): push a few context ids first and discard their
// text to continue an existing sequence.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  ~StreamDecoder();
  StreamDecoder(StreamDecoder&&) noexcept;
  StreamDecoder& operator=(StreamDecoder&&) noexcept;

  // Text that became final with `id` (often empty while a character is
  // incomplete). Throws qllm::Error for an id with no token.
  std::string push(int32_t id);
  // Ends the sequence and returns what was held back; the decoder then starts
  // a new sequence.
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  std::unique_ptr<DecodeState> state_;
};

}  // namespace qllm
