// Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD (utf8proc), Prepend,
// Replace (string or regex), Strip, Sequence. Anything else is refused by name.
#pragma once

#include "engine/tokenizer/json_util.h"

#include <memory>
#include <string>

namespace qllm {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `s` (valid UTF-8) in place.
  virtual void normalize(std::string& s) const = 0;
};

// nullptr for a JSON null.
std::unique_ptr<Normalizer> parse_normalizer(const tokjson::Json& j, const tokjson::Where& w);

}  // namespace qllm
