// Decoders of tokenizer.json (ByteLevel, Replace, ByteFallback, Fuse, Strip,
// Metaspace, Sequence) run as a streaming chain.
//
// Hugging Face decodes a whole list of tokens at once. Here each decoder is a
// step that takes tokens one at a time and passes on what is final: a token
// is "whole" until a fusing step (Fuse, ByteLevel) turns the tokens into one
// growing text, after which steps see chunks of that text. Steps hold back only
// what later tokens could still change (an incomplete UTF-8 character, a run
// of byte tokens, trailing characters a Strip may remove). Decoding a list
// pushes every token and finishes, so a stream decoded token by token gives
// exactly the text of the whole list.
#pragma once

#include "engine/tokenizer/json_util.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

struct DecodePiece {
  std::string text;
  bool whole = true;  // a complete token; false: a chunk of one fused text
};

// The running state of one decoder of the chain.
class DecodeStep {
 public:
  virtual ~DecodeStep() = default;
  virtual void push(DecodePiece&& in, std::vector<DecodePiece>& out) = 0;
  virtual void finish(std::vector<DecodePiece>& out) { (void)out; }
};

// One decoder as read from the file.
class DecoderSpec {
 public:
  virtual ~DecoderSpec() = default;
  virtual std::unique_ptr<DecodeStep> start() const = 0;
};

// The decoder chain of a tokenizer (empty when "decoder" is null: tokens are
// then joined with spaces, as Hugging Face does).
struct DecoderChain {
  std::vector<std::unique_ptr<DecoderSpec>> steps;
  bool present = false;
};

DecoderChain parse_decoder(const tokjson::Json& j, const tokjson::Where& w);

// One decoding in progress.
class DecodeState {
 public:
  explicit DecodeState(const DecoderChain& chain);
  // Appends the text that became final.
  void push(std::string_view token, std::string& out);
  // Ends the sequence: appends what was held back. The state is then fresh.
  void finish(std::string& out);

 private:
  void run(size_t from, std::vector<DecodePiece>& pieces, std::string& out);
  void reset();

  const DecoderChain* chain_;
  std::vector<std::unique_ptr<DecodeStep>> steps_;
  size_t tokens_out_ = 0;  // whole tokens emitted (join with spaces without a decoder)
};

}  // namespace qllm
