// Python str operations on UTF-8 strings: code points, Unicode whitespace,
// strip/split/replace/case, and slice indices.
#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>

#include "engine/tokenizer/chat_template_value.h"

namespace qllm::jinja {

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char32_t>(c);
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                              static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) {  // invalid UTF-8 (JSON parsers reject it; be safe anyway)
      out += U'\uFFFD';
      ++i;
    } else {
      out += static_cast<char32_t>(cp);
      i += static_cast<std::size_t>(n);
    }
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

std::size_t code_point_count(std::string_view s) {
  std::size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

bool is_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E:
    case 0x1F: case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_printable_codepoint(char32_t c) {
  if (c == U' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

std::string str_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  std::u32string cps = utf8_decode(s);
  std::u32string set;
  if (chars) set = utf8_decode(*chars);
  auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : is_space(c); };
  std::size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return utf8_encode(std::u32string_view(cps).substr(b, e - b));
}

namespace {

Json split_whitespace(std::string_view s, std::int64_t maxsplit, bool from_right) {
  std::u32string cps = utf8_decode(s);
  std::vector<std::u32string> parts;
  if (!from_right) {
    std::size_t i = 0, n = cps.size();
    while (true) {
      while (i < n && is_space(cps[i])) ++i;
      if (i == n) break;
      if (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit) {
        parts.push_back(cps.substr(i));
        break;
      }
      std::size_t j = i;
      while (j < n && !is_space(cps[j])) ++j;
      parts.push_back(cps.substr(i, j - i));
      i = j;
    }
  } else {
    std::size_t e = cps.size();
    while (true) {
      while (e > 0 && is_space(cps[e - 1])) --e;
      if (e == 0) break;
      if (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit) {
        parts.push_back(cps.substr(0, e));
        break;
      }
      std::size_t b = e;
      while (b > 0 && !is_space(cps[b - 1])) --b;
      parts.push_back(cps.substr(b, e - b));
      e = b;
    }
    std::reverse(parts.begin(), parts.end());
  }
  Json out = Json::array();
  for (const auto& p : parts) out.push_back(utf8_encode(p));
  return out;
}

}  // namespace

Json str_split(std::string_view s, const std::optional<std::string>& sep, std::int64_t maxsplit,
               bool from_right) {
  if (!sep) return split_whitespace(s, maxsplit, from_right);
  if (sep->empty()) eval_fail("empty separator");
  std::vector<std::string> parts;
  std::int64_t splits = 0;
  if (!from_right) {
    std::size_t start = 0;
    while (maxsplit < 0 || splits < maxsplit) {
      auto pos = s.find(*sep, start);
      if (pos == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, pos - start));
      start = pos + sep->size();
      ++splits;
    }
    parts.emplace_back(s.substr(start));
  } else {
    std::size_t end = s.size();
    while (maxsplit < 0 || splits < maxsplit) {
      if (end < sep->size()) break;
      auto pos = s.rfind(*sep, end - sep->size());
      if (pos == std::string_view::npos) break;
      parts.emplace_back(s.substr(pos + sep->size(), end - pos - sep->size()));
      end = pos;
      ++splits;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
  }
  Json out = Json::array();
  for (auto& p : parts) out.push_back(std::move(p));
  return out;
}

std::string str_replace(std::string_view s, std::string_view from, std::string_view to, std::int64_t count) {
  std::string out;
  std::int64_t done = 0;
  if (from.empty()) {
    std::u32string cps = utf8_decode(s);
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      utf8_append(out, c);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  std::size_t start = 0;
  while (count < 0 || done < count) {
    auto pos = s.find(from, start);
    if (pos == std::string_view::npos) break;
    out += s.substr(start, pos - start);
    out += to;
    start = pos + from.size();
    ++done;
  }
  out += s.substr(start);
  return out;
}

namespace {
template <typename F>
std::string map_code_points(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : utf8_decode(s)) utf8_append(out, f(c));
  return out;
}
}  // namespace

std::string str_upper(std::string_view s) {
  return map_code_points(s, [](char32_t c) {
    return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c)));
  });
}

std::string str_lower(std::string_view s) {
  return map_code_points(s, [](char32_t c) {
    return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
  });
}

std::string str_capitalize(std::string_view s) {
  bool first = true;
  return map_code_points(s, [&first](char32_t c) {
    auto cp = static_cast<utf8proc_int32_t>(c);
    auto r = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
    first = false;
    return static_cast<char32_t>(r);
  });
}

std::vector<std::int64_t> slice_indices(std::int64_t n, std::optional<std::int64_t> start,
                                        std::optional<std::int64_t> stop, std::optional<std::int64_t> step) {
  const std::int64_t st = step.value_or(1);
  if (st == 0) eval_fail("slice step cannot be zero");
  const std::int64_t lower = st < 0 ? -1 : 0;
  const std::int64_t upper = st < 0 ? n - 1 : n;
  auto clamp = [&](std::optional<std::int64_t> v, std::int64_t dflt) {
    if (!v) return dflt;
    std::int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  const std::int64_t b = clamp(start, st < 0 ? upper : lower);
  const std::int64_t e = clamp(stop, st < 0 ? lower : upper);
  std::vector<std::int64_t> out;
  if (st > 0) {
    for (std::int64_t i = b; i < e; i += st) out.push_back(i);
  } else {
    for (std::int64_t i = b; i > e; i += st) out.push_back(i);
  }
  return out;
}

}  // namespace qllm::jinja
