// An incremental Server-Sent Events parser (the WHATWG event-stream format,
// the subset OpenAI-compatible servers use for streamed completions).
//
// Bytes are fed in pieces of any size (an HTTP client hands the body over as
// it arrives, split anywhere, even inside a "\r\n"); every event completed by
// a piece comes back as its data payload:
//
//   lines end with "\n", "\r\n" or "\r"; a blank line ends an event;
//   "data: x" appends x to the event's data (one leading space is dropped;
//   several data lines are joined with "\n"); "data" alone appends "";
//   lines starting with ':' are comments; other fields (event, id, retry) are
//   read and ignored; an event without data lines yields nothing; a UTF-8 BOM
//   at the very start is skipped.
//
// "[DONE]" is an ordinary payload: the caller decides what it means
// (is_done()). An event the stream never terminates with a blank line is
// dropped, as the format specifies; pending() tells whether one was cut off.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::bench {

class SseParser {
 public:
  // Feeds bytes; appends the data payload of each event they complete to `out`.
  void feed(std::string_view bytes, std::vector<std::string>& out);
  // The same, returning the payloads.
  std::vector<std::string> feed(std::string_view bytes);

  // Whether bytes of an unfinished line or event are held (the stream was cut
  // off mid-event if this is still true at its end).
  bool pending() const;

  // The OpenAI end-of-stream marker.
  static bool is_done(std::string_view payload) { return payload == "[DONE]"; }

  // A single line may not grow beyond this many bytes (a stream that never
  // ends a line is not an event stream); feed() throws qllm::Error past it.
  static constexpr size_t kMaxLineBytes = size_t(64) << 20;

 private:
  void line(std::vector<std::string>& out);

  std::string line_;         // the line being read, without its terminator
  std::string data_;         // the event's data so far
  bool has_data_ = false;    // a data line was seen in this event
  bool after_cr_ = false;    // the last byte was '\r': a following '\n' belongs to it
  bool at_start_ = true;     // nothing fed yet (BOM check)
  size_t bom_matched_ = 0;   // bytes of a leading BOM seen so far
};

}  // namespace qllm::bench
