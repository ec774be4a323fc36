#include "engine/common/key_values.h"

#include "engine/common/error.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace qllm {

int64_t parse_key_int(const std::string& text, std::string_view where, std::string_view key) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    fail("{}: key '{}' must be an integer, got '{}'", where, key, text);
  return v;
}

double parse_key_number(const std::string& text, std::string_view where, std::string_view key) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(x))
    fail("{}: key '{}' must be a finite number, got '{}'", where, key, text);
  return x;
}

bool parse_key_bool(const std::string& text, std::string_view where, std::string_view key) {
  if (text != "true" && text != "false")
    fail("{}: key '{}' must be true or false, got '{}'", where, key, text);
  return text == "true";
}

void check_key_range(double x, double lo, double hi, const std::string& text, std::string_view where,
                     std::string_view key) {
  if (x < lo || x > hi) fail("{}: key '{}' = {} is out of range [{}, {}]", where, key, text, lo, hi);
}

void check_key_choice(const std::string& text, const std::vector<std::string_view>& choices,
                      std::string_view where, std::string_view key) {
  if (choices.empty() || std::find(choices.begin(), choices.end(), text) != choices.end()) return;
  std::string list;
  for (auto ch : choices) list += (list.empty() ? "" : ", ") + std::string(ch);
  fail("{}: key '{}' = '{}' is not one of: {}", where, key, text, list);
}

std::string render_key_number(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

}  // namespace qllm
