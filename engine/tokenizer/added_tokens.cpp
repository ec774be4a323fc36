#include "engine/tokenizer/added_tokens.h"

#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/utf8.h"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>

namespace qllm {
namespace {

using tokjson::Json;
using tokjson::Where;

// Rust regex's Unicode \w: letters, marks, decimal digits, connector punctuation.
bool is_word_char(char32_t c) {
  if (c < 0x80) return std::isalnum(static_cast<int>(c)) != 0 || c == '_';
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return c == 0x200C || c == 0x200D;
  }
}

// Start of the last character of s (s not empty).
size_t last_char_start(std::string_view s) {
  size_t k = s.size() - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  return k;
}

bool ends_with_word(std::string_view s) {
  return !s.empty() && is_word_char(utf8::next(s, last_char_start(s)).cp);
}

bool starts_with_word(std::string_view s) {
  return !s.empty() && is_word_char(utf8::next(s, 0).cp);
}

// Offset where the trailing run of whitespace of s begins.
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    const size_t k = last_char_start(s.substr(0, end));
    if (!utf8::is_whitespace(utf8::next(s, k).cp)) break;
    end = k;
  }
  return end;
}

// Length of the leading run of whitespace of s.
size_t leading_space_len(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const utf8::Step st = utf8::next(s, i);
    if (!utf8::is_whitespace(st.cp)) break;
    i += st.len;
  }
  return i;
}

bool get_flag(const Json& j, const char* k, const Where& w, bool dflt) {
  return tokjson::get_bool_or(j, k, w, dflt);
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view pattern, int32_t id) {
  if (pattern.empty()) return;
  first[static_cast<uint8_t>(pattern[0])] = true;
  int32_t node = 0;
  for (char ch : pattern) {
    const auto b = static_cast<uint8_t>(ch);
    auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, INT32_MIN));
    if (it != next.end() && it->first == b) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes.size());
      next.insert(it, {b, child});
      nodes.emplace_back();
      node = child;
    }
  }
  if (nodes[node].id < 0) nodes[node].id = id;  // the first of equal patterns wins
}

std::pair<size_t, int32_t> AddedVocabulary::Trie::longest_at(std::string_view text,
                                                             size_t pos) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    const auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, INT32_MIN));
    if (it == next.end() || it->first != b) break;
    node = it->second;
    if (nodes[node].id >= 0) best = {i + 1 - pos, nodes[node].id};
  }
  return best;
}

AddedVocabulary::AddedVocabulary(const Json* list, const Where& w, const BpeModel& model,
                                 const Normalizer* normalizer) {
  if (list == nullptr) return;
  if (!list->is_array())
    tokjson::bad(w, fmt::format("expected an array, got {}", tokjson::type_name(*list)));
  const auto model_size = static_cast<int64_t>(model.size());
  std::vector<std::string> special_order, classic_order;  // contents, as Hugging Face orders them
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& t = (*list)[i];
    const Where tw = w.index(i);
    AddedToken tok;
    tok.content = tokjson::get_string(t, "content", tw);
    tok.special = get_flag(t, "special", tw, false);
    tok.lstrip = get_flag(t, "lstrip", tw, false);
    tok.rstrip = get_flag(t, "rstrip", tw, false);
    tok.normalized = get_flag(t, "normalized", tw, !tok.special);
    tok.single_word = get_flag(t, "single_word", tw, false);
    if (tok.content.empty()) continue;
    if (!utf8::is_valid(tok.content)) tokjson::bad(tw.key("content"), "not valid UTF-8");
    const bool seen_special =
        std::find(special_order.begin(), special_order.end(), tok.content) != special_order.end();
    if (tok.special && !seen_special) special_order.push_back(tok.content);
    // Hugging Face's id rule (the "id" in the file is only a hint).
    int64_t id = -1;
    if (auto it = by_content_.find(tok.content); it != by_content_.end()) {
      id = it->second;
    } else if (auto mid = model.token_to_id(tok.content)) {
      id = *mid;
    } else if (max_id_ < 0) {
      id = model_size;
    } else {
      id = (max_id_ >= model_size || model_size == 0) ? max_id_ + 1 : model_size;
    }
    if (id > INT32_MAX) tokjson::bad(tw, "too many added tokens");
    tok.id = static_cast<int32_t>(id);
    by_content_[tok.content] = tok.id;
    if (auto it = index_by_id_.find(tok.id); it != index_by_id_.end()) {
      tokens_[it->second] = tok;
    } else {
      index_by_id_[tok.id] = tokens_.size();
      tokens_.push_back(tok);
    }
    max_id_ = std::max(max_id_, tok.id);
    const bool is_special_now =
        std::find(special_order.begin(), special_order.end(), tok.content) != special_order.end();
    if (!is_special_now) classic_order.push_back(tok.content);
  }
  // Patterns: special tokens first, then the others, each in file order.
  std::vector<std::string> order = special_order;
  order.insert(order.end(), classic_order.begin(), classic_order.end());
  for (const std::string& content : order) {
    const int32_t id = by_content_.at(content);
    const AddedToken& tok = tokens_[index_by_id_.at(id)];
    if (!tok.normalized) {
      raw_.insert(content, id);
    } else {
      std::string pattern = content;
      if (normalizer != nullptr) normalizer->normalize(pattern);
      normalized_.insert(pattern, id);
    }
  }
}

std::vector<TextSegment> AddedVocabulary::split(std::string_view text, bool normalized_side) const {
  const Trie& trie = normalized_side ? normalized_ : raw_;
  std::vector<TextSegment> out;
  size_t start_offset = 0;
  if (trie.nodes.size() > 1) {
    for (size_t pos = 0; pos < text.size();) {
      if (!trie.first[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      const auto [len, id] = trie.longest_at(text, pos);
      if (len == 0) {
        ++pos;
        continue;
      }
      size_t start = pos, stop = pos + len;
      pos = stop;  // the search resumes after the match itself
      const AddedToken& tok = tokens_[index_by_id_.at(id)];
      if (tok.single_word) {
        const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        const bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (tok.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
      if (tok.rstrip) stop += leading_space_len(text.substr(stop));
      if (start_offset < start)
        out.push_back({text.substr(start_offset, start - start_offset), -1, start_offset});
      out.push_back({{}, id, start});
      start_offset = stop;
    }
  }
  if (start_offset < text.size() || text.empty())
    out.push_back({text.substr(std::min(start_offset, text.size())), -1, start_offset});
  return out;
}

std::optional<int32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::by_id(int32_t id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

bool AddedVocabulary::is_special(int32_t id) const {
  const AddedToken* t = by_id(id);
  return t != nullptr && t->special;
}

}  // namespace qllm
