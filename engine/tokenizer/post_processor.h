// Post-processors of tokenizer.json, applied when special tokens are requested
// (encode with add_special): TemplateProcessing (e.g. Mixtral's "<s> $A"),
// RobertaProcessing / BertProcessing (cls $A sep) and ByteLevel (ids
// unchanged), or a Sequence of them.
#pragma once

#include "engine/tokenizer/json_util.h"

#include <cstdint>
#include <vector>

namespace qllm {

class PostProcessor {
 public:
  // A processor that leaves ids unchanged.
  PostProcessor() = default;
  PostProcessor(const tokjson::Json& j, const tokjson::Where& w);

  // Ids of the single-sequence template around `ids`.
  std::vector<int32_t> apply(std::vector<int32_t> ids) const;

 private:
  void parse(const tokjson::Json& j, const tokjson::Where& w);
  // The single-sequence template: runs of special ids, with -1 standing for
  // the sequence itself. Processors in a Sequence compose.
  std::vector<std::vector<int32_t>> templates_;
};

}  // namespace qllm
