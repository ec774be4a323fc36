#include "engine/tokenizer/pre_tokenizer.h"

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"

#include <utf8proc.h>

#include <algorithm>

namespace qllm {
namespace {

using tokjson::Json;
using tokjson::Where;

// Applies `cut` (text -> kept ranges) to every piece.
template <typename Cut>
void split_each(std::vector<PreToken>& pieces, Cut&& cut) {
  std::vector<PreToken> out;
  out.reserve(pieces.size() * 2);
  for (PreToken& p : pieces) {
    for (const RegexMatch& r : cut(p.text)) {
      out.push_back({p.text.substr(r.start, r.end - r.start), p.at_start && r.start == 0});
    }
  }
  pieces = std::move(out);
}

std::vector<RegexMatch> find_literal(std::string_view text, std::string_view needle) {
  std::vector<RegexMatch> out;
  if (needle.empty()) return out;
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + needle.size())) {
    out.push_back({pos, pos + needle.size()});
  }
  return out;
}

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void split(std::vector<PreToken>& pieces) const override {
    if (add_prefix_space_) {
      for (PreToken& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    }
    if (use_regex_) {
      split_each(pieces, [](const std::string& t) {
        return split_ranges(t.size(), gpt2_pattern().find_all(t), SplitBehavior::kIsolated, false);
      });
    }
    std::string mapped;
    for (PreToken& p : pieces) {
      mapped.clear();
      byte_level::encode(p.text, mapped);
      p.text.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class Split final : public PreTokenizer {
 public:
  Split(Regex re, SplitBehavior behavior, bool invert)
      : re_(std::move(re)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<PreToken>& pieces) const override {
    split_each(pieces, [this](const std::string& t) {
      return split_ranges(t.size(), re_.find_all(t), behavior_, invert_);
    });
  }

 private:
  Regex re_;
  SplitBehavior behavior_;
  bool invert_;
};

class Metaspace final : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kNever, kFirst };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void split(std::vector<PreToken>& pieces) const override {
    for (PreToken& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + replacement_.size());
      for (char c : p.text) {
        if (c == ' ')
          t += replacement_;
        else
          t += c;
      }
      const bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && p.at_start)))
        t.insert(0, replacement_);
      p.text = std::move(t);
    }
    if (split_) {
      split_each(pieces, [this](const std::string& t) {
        return split_ranges(t.size(), find_literal(t, replacement_), SplitBehavior::kMergedWithNext,
                            false);
      });
    }
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void split(std::vector<PreToken>& pieces) const override {
    split_each(pieces, [this](const std::string& t) {
      // Rust's char::is_numeric: general categories Nd, Nl, No.
      std::vector<RegexMatch> digits;
      for (size_t i = 0; i < t.size();) {
        const utf8::Step st = utf8::next(t, i);
        const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(st.cp));
        if (cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
            cat == UTF8PROC_CATEGORY_NO)
          digits.push_back({i, i + st.len});
        i += st.len;
      }
      return split_ranges(t.size(), digits,
                          individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
                          false);
    });
  }

 private:
  bool individual_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(std::vector<PreToken>& pieces) const override {
    for (const auto& p : parts_) p->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

SplitBehavior parse_behavior(const Json& j, const Where& w) {
  const std::string b = tokjson::get_string(j, "behavior", w);
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  tokjson::bad(w.key("behavior"),
               fmt::format("unknown split behavior \"{}\" (expected Removed, Isolated, "
                           "MergedWithPrevious, MergedWithNext or Contiguous)",
                           b));
}

Metaspace::Prepend parse_prepend_scheme(const Json& j, const Where& w) {
  if (const Json* legacy = tokjson::optional_member(j, "add_prefix_space");
      legacy != nullptr && tokjson::optional_member(j, "prepend_scheme") == nullptr) {
    return tokjson::get_bool_or(j, "add_prefix_space", w, true) ? Metaspace::Prepend::kAlways
                                                                : Metaspace::Prepend::kNever;
  }
  const std::string s = tokjson::get_string_or(j, "prepend_scheme", w, "always");
  if (s == "always") return Metaspace::Prepend::kAlways;
  if (s == "never") return Metaspace::Prepend::kNever;
  if (s == "first") return Metaspace::Prepend::kFirst;
  tokjson::bad(w.key("prepend_scheme"),
               fmt::format("unknown prepend_scheme \"{}\" (expected always, never or first)", s));
}

}  // namespace

std::vector<RegexMatch> split_ranges(size_t n, const std::vector<RegexMatch>& matches,
                                     SplitBehavior behavior, bool invert) {
  // Every byte of the text, as alternating (range, is_match) spans.
  struct Span {
    size_t start, end;
    bool match;
  };
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (const RegexMatch& m : matches) {
    if (m.start > prev) spans.push_back({prev, m.start, invert});
    spans.push_back({m.start, m.end, !invert});
    prev = m.end;
  }
  if (prev < n || spans.empty()) spans.push_back({prev, n, invert});

  std::vector<Span> kept;  // match == true here means "drop"
  kept.reserve(spans.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      kept = spans;
      break;
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) kept.push_back({s.start, s.end, false});
      break;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.match == previous_match && !kept.empty())
          kept.back().end = s.end;
        else
          kept.push_back({s.start, s.end, false});
        previous_match = s.match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.match && !previous_match && !kept.empty())
          kept.back().end = s.end;
        else
          kept.push_back({s.start, s.end, false});
        previous_match = s.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !kept.empty())
          kept.back().start = it->start;
        else
          kept.push_back({it->start, it->end, false});
        previous_match = it->match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  std::vector<RegexMatch> out;
  out.reserve(kept.size());
  for (const Span& s : kept)
    if (!s.match && s.end > s.start) out.push_back({s.start, s.end});
  return out;
}

const Regex& gpt2_pattern() {
  static const Regex re = Regex::compile(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return re;
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const Json& j, const Where& w) {
  if (j.is_null()) return nullptr;
  const std::string type = tokjson::type_of(j, w);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(tokjson::get_bool_or(j, "add_prefix_space", w, true),
                                       tokjson::get_bool_or(j, "use_regex", w, true));
  }
  if (type == "Split") {
    return std::make_unique<Split>(
        parse_pattern(tokjson::member(j, "pattern", w), w.key("pattern")), parse_behavior(j, w),
        tokjson::get_bool_or(j, "invert", w, false));
  }
  if (type == "Metaspace") {
    std::string rep = tokjson::get_string_or(j, "replacement", w, "\xE2\x96\x81");
    if (rep.empty() || utf8::char_len(static_cast<unsigned char>(rep[0])) != rep.size())
      tokjson::bad(w.key("replacement"), "expected a single character");
    return std::make_unique<Metaspace>(std::move(rep), parse_prepend_scheme(j, w),
                                       tokjson::get_bool_or(j, "split", w, true));
  }
  if (type == "Digits")
    return std::make_unique<Digits>(tokjson::get_bool_or(j, "individual_digits", w, false));
  if (type == "Sequence") {
    const Json& list = tokjson::member(j, "pretokenizers", w);
    if (!list.is_array()) tokjson::bad(w.key("pretokenizers"), "expected an array");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = parse_pre_tokenizer(list[i], w.key("pretokenizers").index(i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  tokjson::bad(w.key("type"), fmt::format("unsupported pre_tokenizer \"{}\" (supported: ByteLevel, "
                                          "Split, Metaspace, Digits, Sequence)",
                                          type));
}

}  // namespace qllm
