#include "engine/tokenizer/decoder.h"

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace qllm {
namespace {

using tokjson::Json;
using tokjson::Where;

std::string replace_all(const Regex& re, std::string_view s, std::string_view content) {
  std::string out;
  size_t prev = 0;
  for (const RegexMatch& m : re.find_all(s)) {
    out.append(s.substr(prev, m.start - prev));
    out.append(content);
    prev = m.end;
  }
  out.append(s.substr(prev));
  return out;
}

// ---- Replace --------------------------------------------------------------

class ReplaceStep final : public DecodeStep {
 public:
  ReplaceStep(const Regex& re, const std::string& content) : re_(re), content_(content) {}
  void push(DecodePiece&& in, std::vector<DecodePiece>& out) override {
    if (in.whole) {
      out.push_back({replace_all(re_, in.text, content_), true});
      return;
    }
    held_ += in.text;
    if (!re_.is_literal()) return;  // a regex over fused text waits for the end
    // Keep the longest tail after the last match that could still grow into one.
    const std::string& pat = re_.pattern();
    if (pat.empty()) {
      out.push_back({std::move(held_), false});
      held_.clear();
      return;
    }
    const auto matches = re_.find_all(held_);
    const size_t free_from = matches.empty() ? 0 : matches.back().end;
    size_t keep = 0;
    for (size_t n = std::min(pat.size() - 1, held_.size() - free_from); n > 0; --n) {
      if (held_.compare(held_.size() - n, n, pat, 0, n) == 0) {
        keep = n;
        break;
      }
    }
    std::string done =
        replace_all(re_, std::string_view(held_).substr(0, held_.size() - keep), content_);
    held_.erase(0, held_.size() - keep);
    if (!done.empty()) out.push_back({std::move(done), false});
  }
  void finish(std::vector<DecodePiece>& out) override {
    if (!held_.empty()) out.push_back({replace_all(re_, held_, content_), false});
    held_.clear();
  }

 private:
  const Regex& re_;
  const std::string& content_;
  std::string held_;
};

class ReplaceSpec final : public DecoderSpec {
 public:
  ReplaceSpec(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  std::unique_ptr<DecodeStep> start() const override {
    return std::make_unique<ReplaceStep>(re_, content_);
  }

 private:
  Regex re_;
  std::string content_;
};

// ---- ByteFallback ---------------------------------------------------------

// The byte a "<0xXX>" token stands for, or -1.
int byte_token_value(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Whether bytes[from..] holds a sequence no later bytes can make valid; moves
// `from` past the complete characters so a growing run is scanned once.
bool certainly_invalid(std::string_view bytes, size_t& from) {
  while (from < bytes.size()) {
    const utf8::Step st = utf8::next(bytes, from);
    if (st.kind == utf8::Step::kInvalid) return true;
    if (st.kind == utf8::Step::kIncomplete) return false;
    from += st.len;
  }
  return false;
}

class ByteFallbackStep final : public DecodeStep {
 public:
  void push(DecodePiece&& in, std::vector<DecodePiece>& out) override {
    if (!in.whole) {  // fused text: it is one token, a byte token only if it is short
      if (!passing_) {
        held_ += in.text;
        if (held_.size() <= 6) return;
        passing_ = true;
        out.push_back({std::move(held_), false});
        held_.clear();
        return;
      }
      out.push_back(std::move(in));
      return;
    }
    const int b = byte_token_value(in.text);
    if (b >= 0) {
      bytes_ += static_cast<char>(b);
      // A run that can no longer be valid becomes one U+FFFD per byte, now.
      if (invalid_ || certainly_invalid(bytes_, checked_)) {
        invalid_ = true;
        checked_ = 0;
        for (size_t k = 0; k < bytes_.size(); ++k)
          out.push_back({std::string(utf8::kReplacement), true});
        bytes_.clear();
      }
      return;
    }
    flush_run(out);
    out.push_back(std::move(in));
  }
  void finish(std::vector<DecodePiece>& out) override {
    flush_run(out);
    if (!held_.empty()) {
      const int b = byte_token_value(held_);
      if (b >= 0) {
        held_ = b < 0x80 ? std::string(1, static_cast<char>(b)) : std::string(utf8::kReplacement);
      }
      out.push_back({std::move(held_), false});
    }
    held_.clear();
    passing_ = false;
  }

 private:
  void flush_run(std::vector<DecodePiece>& out) {
    if (!bytes_.empty()) {
      size_t from = checked_;
      if (!certainly_invalid(bytes_, from) && from == bytes_.size()) {
        out.push_back({std::move(bytes_), true});
      } else {
        for (size_t k = 0; k < bytes_.size(); ++k)
          out.push_back({std::string(utf8::kReplacement), true});
      }
    }
    bytes_.clear();
    invalid_ = false;
    checked_ = 0;
  }

  std::string bytes_;   // the current run of byte tokens
  size_t checked_ = 0;  // bytes_[0, checked_) are complete valid characters
  bool invalid_ = false;
  std::string held_;  // fused text not yet known not to be a byte token
  bool passing_ = false;
};

// ---- ByteLevel ------------------------------------------------------------

class ByteLevelStep final : public DecodeStep {
 public:
  void push(DecodePiece&& in, std::vector<DecodePiece>& out) override {
    if (!in.whole) {  // fused text is one token: map it at the end
      fused_ += in.text;
      return;
    }
    bytes_.clear();
    byte_level::decode_token(in.text, bytes_);
    emit(out);
  }
  void finish(std::vector<DecodePiece>& out) override {
    bytes_.clear();
    if (!fused_.empty()) byte_level::decode_token(fused_, bytes_);
    fused_.clear();
    emit(out);
    std::string rest;
    utf8_.finish(rest);
    if (!rest.empty()) out.push_back({std::move(rest), false});
  }

 private:
  void emit(std::vector<DecodePiece>& out) {
    std::string text;
    utf8_.push(bytes_, text);
    if (!text.empty()) out.push_back({std::move(text), false});
  }
  utf8::LossyStream utf8_;
  std::string bytes_, fused_;
};

// ---- Fuse -----------------------------------------------------------------

class FuseStep final : public DecodeStep {
 public:
  void push(DecodePiece&& in, std::vector<DecodePiece>& out) override {
    in.whole = false;
    out.push_back(std::move(in));
  }
};

// ---- Strip ----------------------------------------------------------------

class StripStep final : public DecodeStep {
 public:
  StripStep(const std::string& content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void push(DecodePiece&& in, std::vector<DecodePiece>& out) override {
    if (in.whole) {
      out.push_back({strip_whole(in.text), true});
      return;
    }
    std::string_view s = in.text;
    while (stripped_ < start_ && s.substr(0, content_.size()) == content_ && !s.empty()) {
      s.remove_prefix(content_.size());
      ++stripped_;
    }
    if (!s.empty()) stripped_ = start_;  // only leading characters are stripped
    if (stop_ == 0) {
      if (!s.empty()) out.push_back({std::string(s), false});
      return;
    }
    // Hold the trailing run of `content` characters: the end may strip them.
    size_t run = s.size();
    while (run >= content_.size() && s.substr(run - content_.size(), content_.size()) == content_)
      run -= content_.size();
    if (run == 0) {
      held_ += s;
      return;
    }
    std::string text = std::move(held_);
    text.append(s.substr(0, run));
    held_ = std::string(s.substr(run));
    out.push_back({std::move(text), false});
  }
  void finish(std::vector<DecodePiece>& out) override {
    for (size_t k = 0; k < stop_ && held_.size() >= content_.size(); ++k)
      held_.resize(held_.size() - content_.size());
    if (!held_.empty()) out.push_back({std::move(held_), false});
    held_.clear();
    stripped_ = 0;
  }

 private:
  std::string strip_whole(std::string_view s) const {
    size_t b = 0, e = s.size();
    for (size_t k = 0; k < start_ && s.substr(b, content_.size()) == content_; ++k)
      b += content_.size();
    for (size_t k = 0; k < stop_ && e >= b + content_.size() &&
                       s.substr(e - content_.size(), content_.size()) == content_;
         ++k)
      e -= content_.size();
    return std::string(s.substr(b, e - b));
  }

  const std::string& content_;
  size_t start_, stop_;
  size_t stripped_ = 0;
  std::string held_;
};

// ---- Metaspace ------------------------------------------------------------

class MetaspaceStep final : public DecodeStep {
 public:
  MetaspaceStep(const std::string& replacement, bool drop_first)
      : replacement_(replacement), drop_first_(drop_first) {}
  void push(DecodePiece&& in, std::vector<DecodePiece>& out) override {
    // In the first token (and in fused text, which is one token) Hugging Face
    // drops every replacement character unless prepend_scheme is "never".
    const bool first = !in.whole || seen_ == 0;
    if (in.whole) ++seen_;
    std::string text;
    std::string_view s = in.text;
    for (size_t pos = 0; pos < s.size();) {
      if (s.compare(pos, replacement_.size(), replacement_) == 0) {
        if (!(first && drop_first_)) text += ' ';
        pos += replacement_.size();
      } else {
        text += s[pos++];
      }
    }
    out.push_back({std::move(text), in.whole});
  }
  void finish(std::vector<DecodePiece>& out) override {
    (void)out;
    seen_ = 0;
  }

 private:
  const std::string& replacement_;
  bool drop_first_;
  size_t seen_ = 0;
};

// ---- Specs ----------------------------------------------------------------

template <typename Step>
class SimpleSpec final : public DecoderSpec {
 public:
  std::unique_ptr<DecodeStep> start() const override { return std::make_unique<Step>(); }
};

class StripSpec final : public DecoderSpec {
 public:
  StripSpec(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  std::unique_ptr<DecodeStep> start() const override {
    return std::make_unique<StripStep>(content_, start_, stop_);
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceSpec final : public DecoderSpec {
 public:
  MetaspaceSpec(std::string replacement, bool drop_first)
      : replacement_(std::move(replacement)), drop_first_(drop_first) {}
  std::unique_ptr<DecodeStep> start() const override {
    return std::make_unique<MetaspaceStep>(replacement_, drop_first_);
  }

 private:
  std::string replacement_;
  bool drop_first_;
};

void parse_into(const Json& j, const Where& w, DecoderChain& chain) {
  const std::string type = tokjson::type_of(j, w);
  if (type == "ByteLevel") {
    chain.steps.push_back(std::make_unique<SimpleSpec<ByteLevelStep>>());
  } else if (type == "ByteFallback") {
    chain.steps.push_back(std::make_unique<SimpleSpec<ByteFallbackStep>>());
  } else if (type == "Fuse") {
    chain.steps.push_back(std::make_unique<SimpleSpec<FuseStep>>());
  } else if (type == "Replace") {
    chain.steps.push_back(std::make_unique<ReplaceSpec>(
        parse_pattern(tokjson::member(j, "pattern", w), w.key("pattern")),
        tokjson::get_string(j, "content", w)));
  } else if (type == "Strip") {
    std::string content = tokjson::get_string_or(j, "content", w, " ");
    if (content.empty() || utf8::char_len(static_cast<unsigned char>(content[0])) != content.size())
      tokjson::bad(w.key("content"), "expected a single character");
    const int64_t start = tokjson::get_int_or(j, "start", w, 0);
    const int64_t stop = tokjson::get_int_or(j, "stop", w, 0);
    if (start < 0 || stop < 0) tokjson::bad(w, "start and stop must not be negative");
    chain.steps.push_back(std::make_unique<StripSpec>(
        std::move(content), static_cast<size_t>(start), static_cast<size_t>(stop)));
  } else if (type == "Metaspace") {
    std::string rep = tokjson::get_string_or(j, "replacement", w, "\xE2\x96\x81");
    if (rep.empty()) tokjson::bad(w.key("replacement"), "expected a single character");
    bool drop_first = true;
    if (tokjson::optional_member(j, "prepend_scheme") != nullptr) {
      drop_first = tokjson::get_string(j, "prepend_scheme", w) != "never";
    } else {
      drop_first = tokjson::get_bool_or(j, "add_prefix_space", w, true);
    }
    chain.steps.push_back(std::make_unique<MetaspaceSpec>(std::move(rep), drop_first));
  } else if (type == "Sequence") {
    const Json& list = tokjson::member(j, "decoders", w);
    if (!list.is_array()) tokjson::bad(w.key("decoders"), "expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_null()) parse_into(list[i], w.key("decoders").index(i), chain);
    }
  } else {
    tokjson::bad(w.key("type"),
                 fmt::format("unsupported decoder \"{}\" (supported: ByteLevel, "
                             "Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)",
                             type));
  }
}

}  // namespace

DecoderChain parse_decoder(const Json& j, const Where& w) {
  DecoderChain chain;
  if (j.is_null()) return chain;
  chain.present = true;
  parse_into(j, w, chain);
  return chain;
}

DecodeState::DecodeState(const DecoderChain& chain) : chain_(&chain) { reset(); }

void DecodeState::reset() {
  steps_.clear();
  for (const auto& spec : chain_->steps) steps_.push_back(spec->start());
  tokens_out_ = 0;
}

void DecodeState::run(size_t from, std::vector<DecodePiece>& pieces, std::string& out) {
  std::vector<DecodePiece> next;
  for (size_t s = from; s < steps_.size() && !pieces.empty(); ++s) {
    next.clear();
    for (DecodePiece& p : pieces) steps_[s]->push(std::move(p), next);
    pieces.swap(next);
  }
  for (DecodePiece& p : pieces) {
    if (!chain_->present && tokens_out_ > 0) out += ' ';
    out += p.text;
    ++tokens_out_;
  }
}

void DecodeState::push(std::string_view token, std::string& out) {
  std::vector<DecodePiece> pieces;
  pieces.push_back({std::string(token), true});
  run(0, pieces, out);
}

void DecodeState::finish(std::string& out) {
  for (size_t s = 0; s < steps_.size(); ++s) {
    std::vector<DecodePiece> pieces;
    steps_[s]->finish(pieces);
    run(s + 1, pieces, out);
  }
  reset();
}

}  // namespace qllm
