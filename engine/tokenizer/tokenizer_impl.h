// The parts of a loaded tokenizer (private to engine/tokenizer).
#pragma once

#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/post_processor.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

#include <memory>
#include <string>

namespace qllm {

struct Tokenizer::Impl {
  std::string name;  // file name for messages
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  PostProcessor post_processor;
  DecoderChain decoder;
  AddedVocabulary added;
  int32_t vocab_size = 0;

  // The text of `id` (added tokens first, as Hugging Face does); throws
  // qllm::Error naming the id when there is none.
  const std::string& token_text(int32_t id) const;
};

}  // namespace qllm
