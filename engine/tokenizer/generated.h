// A generated tokenizer for synthetic checkpoints.
//
// make_generated_tokenizer trains byte-level BPE merges (GPT-2 pre-tokenizer
// regex) on a small built-in English corpus until the vocabulary has
// vocab_size - 3 entries (256 byte tokens + one token per new merge; once the
// corpus has no pair left, deterministic filler merges of ASCII tokens with a
// letter are added), then adds three special tokens after them:
//   vocab_size - 3  <|endoftext|>  (bos and eos and pad)
//   vocab_size - 2  <|im_start|>
//   vocab_size - 1  <|im_end|>
// The result is deterministic: the same vocab_size gives the same bytes.
// Hugging Face `tokenizers` loads tokenizer_json and encodes like qllm.
#pragma once

#include <string>

namespace qllm {

struct GeneratedTokenizerFiles {
  std::string tokenizer_json;         // a valid HF tokenizer.json (byte-level BPE, GPT-2 style regex)
  std::string tokenizer_config_json;  // bos/eos/pad tokens, tokenizer_class PreTrainedTokenizerFast, a ChatML chat_template
  int vocab_size = 0;                 // total ids including special tokens
  int bos_id = -1, eos_id = -1;       // <|endoftext|> is both bos and eos; <|im_start|>, <|im_end|> also special
};

// Deterministic: trains byte-level BPE merges on a built-in English corpus (a few KB of text kept in the source) until vocab_size ids exist (256 byte tokens + merges + 3 special tokens). vocab_size >= 259.
GeneratedTokenizerFiles make_generated_tokenizer(int vocab_size);

}  // namespace qllm
