#include "engine/tokenizer/normalizer.h"

#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

#include <utf8proc.h>

#include <cstdlib>
#include <vector>

namespace qllm {
namespace {

using tokjson::Json;
using tokjson::Where;

class UnicodeForm final : public Normalizer {
 public:
  UnicodeForm(std::string name, int options) : name_(std::move(name)), options_(options) {}
  void normalize(std::string& s) const override {
    bool ascii = true;
    for (char c : s) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    if (ascii) return;  // every normal form leaves ASCII alone
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                            static_cast<utf8proc_ssize_t>(s.size()), &out,
                                            static_cast<utf8proc_option_t>(options_));
    if (n < 0) fail("{} normalizer: {}", name_, utf8proc_errmsg(n));
    s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }

 private:
  std::string name_;
  int options_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prefix_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Replace final : public Normalizer {
 public:
  Replace(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& s) const override {
    const auto matches = re_.find_all(s);
    if (matches.empty()) return;
    std::string out;
    out.reserve(s.size());
    size_t prev = 0;
    for (const RegexMatch& m : matches) {
      out.append(s, prev, m.start - prev);
      out.append(content_);
      prev = m.end;
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }

 private:
  Regex re_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t begin = 0, end = s.size();
    if (left_) {
      while (begin < end) {
        const utf8::Step st = utf8::next(s, begin);
        if (!utf8::is_whitespace(st.cp)) break;
        begin += st.len;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t k = end - 1;
        while (k > begin && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!utf8::is_whitespace(utf8::next(s, k).cp)) break;
        end = k;
      }
    }
    s = s.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const Json& j, const Where& w) {
  if (j.is_null()) return nullptr;
  const std::string type = tokjson::type_of(j, w);
  if (type == "NFC") return std::make_unique<UnicodeForm>(type, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (type == "NFD")
    return std::make_unique<UnicodeForm>(type, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  if (type == "NFKC")
    return std::make_unique<UnicodeForm>(type,
                                         UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD")
    return std::make_unique<UnicodeForm>(type,
                                         UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Prepend") return std::make_unique<Prepend>(tokjson::get_string(j, "prepend", w));
  if (type == "Replace") {
    return std::make_unique<Replace>(
        parse_pattern(tokjson::member(j, "pattern", w), w.key("pattern")),
        tokjson::get_string(j, "content", w));
  }
  if (type == "Strip") {
    return std::make_unique<Strip>(tokjson::get_bool_or(j, "strip_left", w, true),
                                   tokjson::get_bool_or(j, "strip_right", w, true));
  }
  if (type == "Sequence") {
    const Json& list = tokjson::member(j, "normalizers", w);
    if (!list.is_array()) tokjson::bad(w.key("normalizers"), "expected an array");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = parse_normalizer(list[i], w.key("normalizers").index(i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  tokjson::bad(w.key("type"),
               fmt::format("unsupported normalizer \"{}\" (supported: NFC, NFD, NFKC, NFKD, "
                           "Prepend, Replace, Strip, Sequence)",
                           type));
}

}  // namespace qllm
