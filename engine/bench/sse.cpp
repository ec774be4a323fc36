#include "engine/bench/sse.h"

#include "engine/common/error.h"

namespace qllm::bench {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

}  // namespace

std::vector<std::string> SseParser::feed(std::string_view bytes) {
  std::vector<std::string> out;
  feed(bytes, out);
  return out;
}

bool SseParser::pending() const {
  return !line_.empty() || has_data_ || (at_start_ && bom_matched_ > 0);
}

void SseParser::feed(std::string_view bytes, std::vector<std::string>& out) {
  size_t i = 0;
  if (at_start_) {
    while (i < bytes.size() && bom_matched_ < kBom.size() && bytes[i] == kBom[bom_matched_]) {
      ++bom_matched_;
      ++i;
    }
    if (bom_matched_ == kBom.size()) {
      at_start_ = false;  // a whole BOM: skipped
    } else if (i < bytes.size()) {
      // Not a BOM after all: what matched so far is content.
      at_start_ = false;
      const std::string held(kBom.substr(0, bom_matched_));
      bom_matched_ = 0;
      feed(held, out);
    } else {
      return;  // the piece ended inside what may still be a BOM
    }
  }
  for (; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;  // the "\n" of a "\r\n" split across pieces or not
    }
    if (c == '\r') {
      after_cr_ = true;
      line(out);
    } else if (c == '\n') {
      line(out);
    } else {
      if (line_.size() >= kMaxLineBytes)
        fail("event stream: a line longer than {} bytes", kMaxLineBytes);
      line_.push_back(c);
    }
  }
}

void SseParser::line(std::vector<std::string>& out) {
  if (line_.empty()) {  // blank line: dispatch
    if (has_data_) out.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_.front() == ':') {  // comment
    line_.clear();
    return;
  }
  const size_t colon = line_.find(':');
  const std::string_view field = std::string_view(line_).substr(0, colon);
  if (field == "data") {
    std::string_view value;
    if (colon != std::string::npos) {
      value = std::string_view(line_).substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  }
  // event, id, retry and unknown fields: nothing a completion stream needs.
  line_.clear();
}

}  // namespace qllm::bench
