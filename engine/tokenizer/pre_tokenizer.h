// Pre-tokenizers of tokenizer.json: ByteLevel, Split, Metaspace, Digits and
// Sequence. A pre-tokenizer cuts each piece of normalized text into smaller
// pieces (dropping empty ones, as Hugging Face does); the model then encodes
// every piece on its own.
#pragma once

#include "engine/tokenizer/json_util.h"
#include "engine/tokenizer/regex.h"

#include <memory>
#include <string>
#include <vector>

namespace qllm {

struct PreToken {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the input (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void split(std::vector<PreToken>& pieces) const = 0;
};

// How matches of a split pattern are kept (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Cuts `text` at `matches` (sorted, non-overlapping); `invert` swaps what counts
// as a match. Returns the [start, end) ranges kept, none empty.
std::vector<RegexMatch> split_ranges(size_t text_size, const std::vector<RegexMatch>& matches,
                                     SplitBehavior behavior, bool invert);

// GPT-2's pre-tokenizer pattern (the ByteLevel pre-tokenizer with use_regex).
const Regex& gpt2_pattern();

// nullptr for a JSON null.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const tokjson::Json& j, const tokjson::Where& w);

}  // namespace qllm
