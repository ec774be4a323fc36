// qllm error handling.
//
// Two kinds of failure, kept apart:
//  * User-facing errors (bad config, bad checkpoint, bad request, bad tokenizer
//    file): throw qllm::Error with a message that names the file, the key or
//    tensor, and what was expected. Callers catch these and report them.
//  * Internal invariants: QLLM_CHECK / QLLM_CHECK_MSG abort through an
//    out-of-line [[noreturn]] reporter that prints the failed expression, file
//    and line. They are programming errors, never input errors.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace qllm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws qllm::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* expr, const char* file, int line,
                               const std::string& msg);

}  // namespace qllm

#define QLLM_CHECK(cond)                                                \
  do {                                                                  \
    if (!(cond)) ::qllm::check_failed(#cond, __FILE__, __LINE__, {});   \
  } while (0)

#define QLLM_CHECK_MSG(cond, ...)                                       \
  do {                                                                  \
    if (!(cond))                                                        \
      ::qllm::check_failed(#cond, __FILE__, __LINE__,                   \
                           ::fmt::format(__VA_ARGS__));                 \
  } while (0)
