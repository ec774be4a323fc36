// The built-in English text the generated tokenizer is trained on.
#pragma once

namespace qllm {

const char* generated_tokenizer_corpus();

}  // namespace qllm
