#include "engine/tokenizer/generated.h"

#include "engine/common/error.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/generated_corpus.h"
#include "engine/tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include <map>
#include <unordered_map>
#include <vector>

namespace qllm {
namespace {

using OJson = nlohmann::ordered_json;

constexpr const char* kSpecials[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
constexpr int kMaxGeneratedVocab = 1 << 22;

constexpr const char* kChatTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' "
    "}}{% endif %}";

struct Vocab {
  std::vector<std::string> bytes;  // raw bytes of each token
  std::vector<std::string> text;   // byte-level form (the vocabulary key)
  TokenMap ids;                    // byte-level form -> id
  std::vector<std::pair<int32_t, int32_t>> merges;

  int32_t size() const { return static_cast<int32_t>(text.size()); }

  // Records merge (a, b); returns the id of a+b (new or existing).
  int32_t merge(int32_t a, int32_t b) {
    merges.emplace_back(a, b);
    std::string t = text[a] + text[b];
    if (auto it = ids.find(t); it != ids.end()) return it->second;
    const int32_t id = size();
    bytes.push_back(bytes[a] + bytes[b]);
    ids.emplace(t, id);
    text.push_back(std::move(t));
    return id;
  }
};

uint64_t key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Word {
  std::vector<int32_t> syms;
  int64_t count;
};

// BPE training on the corpus: merge the most frequent adjacent pair (ties:
// smallest ids) until `target` tokens exist or no pair is left.
void train(Vocab& v, int32_t target) {
  const std::string_view corpus = generated_tokenizer_corpus();
  std::map<std::string, int64_t> counts;  // ordered: deterministic word order
  for (const RegexMatch& m : gpt2_pattern().find_all(corpus))
    ++counts[std::string(corpus.substr(m.start, m.end - m.start))];
  std::vector<Word> words;
  for (const auto& [w, n] : counts) {
    Word word{{}, n};
    for (char c : w) word.syms.push_back(static_cast<uint8_t>(c));
    words.push_back(std::move(word));
  }
  std::unordered_map<uint64_t, int64_t> pairs;
  while (v.size() < target) {
    pairs.clear();
    for (const Word& w : words)
      for (size_t i = 0; i + 1 < w.syms.size(); ++i)
        pairs[key(w.syms[i], w.syms[i + 1])] += w.count;
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [k, n] : pairs) {
      if (n > best_count || (n == best_count && k < best)) {
        best = k;
        best_count = n;
      }
    }
    if (best_count == 0) return;
    const auto a = static_cast<int32_t>(best >> 32), b = static_cast<int32_t>(best & 0xFFFFFFFFu);
    const int32_t id = v.merge(a, b);
    for (Word& w : words) {
      std::vector<int32_t> out;
      out.reserve(w.syms.size());
      for (size_t i = 0; i < w.syms.size(); ++i) {
        if (i + 1 < w.syms.size() && w.syms[i] == a && w.syms[i + 1] == b) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(w.syms[i]);
        }
      }
      w.syms = std::move(out);
    }
  }
}

// Filler once the corpus is used up: ASCII tokens followed by a letter.
void fill(Vocab& v, int32_t target) {
  while (v.size() < target) {
    const int32_t n = v.size();
    for (int32_t x = 0; x < n && v.size() < target; ++x) {
      bool ascii = true;
      for (char c : v.bytes[x]) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
      if (!ascii) continue;
      for (char letter = 'a'; letter <= 'z' && v.size() < target; ++letter) {
        const int32_t y = static_cast<uint8_t>(letter);
        if (v.ids.count(v.text[x] + v.text[y]) == 0) v.merge(x, y);
      }
    }
  }
}

}  // namespace

GeneratedTokenizerFiles make_generated_tokenizer(int vocab_size) {
  if (vocab_size < 259 || vocab_size > kMaxGeneratedVocab)
    fail(
        "generated tokenizer: vocab_size {} out of range [259, {}] (256 byte tokens + 3 special "
        "tokens at least)",
        vocab_size, kMaxGeneratedVocab);
  const int32_t target = vocab_size - 3;
  Vocab v;
  for (int b = 0; b < 256; ++b) {
    v.bytes.emplace_back(1, static_cast<char>(b));
    v.text.emplace_back(byte_level::char_of(static_cast<uint8_t>(b)));
    v.ids.emplace(v.text.back(), b);
  }
  train(v, target);
  fill(v, target);

  OJson vocab = OJson::object();
  for (int32_t id = 0; id < v.size(); ++id) vocab[v.text[id]] = id;
  OJson merges = OJson::array();
  for (const auto& [a, b] : v.merges) merges.push_back(OJson::array({v.text[a], v.text[b]}));
  OJson added = OJson::array();
  for (int k = 0; k < 3; ++k) {
    added.push_back(OJson{{"id", target + k},
                          {"content", kSpecials[k]},
                          {"single_word", false},
                          {"lstrip", false},
                          {"rstrip", false},
                          {"normalized", false},
                          {"special", true}});
  }
  auto byte_level_cfg = [](bool trim_offsets) {
    return OJson{{"type", "ByteLevel"},
                 {"add_prefix_space", false},
                 {"trim_offsets", trim_offsets},
                 {"use_regex", true}};
  };
  OJson tok;
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  tok["added_tokens"] = std::move(added);
  tok["normalizer"] = nullptr;
  tok["pre_tokenizer"] = byte_level_cfg(true);
  tok["post_processor"] = byte_level_cfg(false);
  tok["decoder"] = byte_level_cfg(true);
  tok["model"] = OJson{{"type", "BPE"},
                       {"dropout", nullptr},
                       {"unk_token", nullptr},
                       {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr},
                       {"fuse_unk", false},
                       {"byte_fallback", false},
                       {"ignore_merges", false},
                       {"vocab", std::move(vocab)},
                       {"merges", std::move(merges)}};

  OJson decoder = OJson::object();
  for (int k = 0; k < 3; ++k) {
    decoder[std::to_string(target + k)] =
        OJson{{"content", kSpecials[k]}, {"lstrip", false},      {"normalized", false},
              {"rstrip", false},         {"single_word", false}, {"special", true}};
  }
  OJson config;
  config["add_bos_token"] = false;
  config["add_eos_token"] = false;
  config["added_tokens_decoder"] = std::move(decoder);
  config["additional_special_tokens"] = OJson::array({kSpecials[1], kSpecials[2]});
  config["bos_token"] = kSpecials[0];
  config["chat_template"] = kChatTemplate;
  config["clean_up_tokenization_spaces"] = false;
  config["eos_token"] = kSpecials[0];
  config["model_max_length"] = 32768;
  config["pad_token"] = kSpecials[0];
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["unk_token"] = nullptr;

  GeneratedTokenizerFiles files;
  files.tokenizer_json = tok.dump();
  files.tokenizer_config_json = config.dump(2) + "\n";
  files.vocab_size = vocab_size;
  files.bos_id = target;
  files.eos_id = target;
  return files;
}

}  // namespace qllm
