// Shape checks in kernel launchers: QLLM_LAUNCH_CHECK(cond, printf format, ...).
//
// engine/common/error.h cannot be included in a .cu file (nvcc 13 with
// -std=c++20 rejects fmt 9's compile-time format strings), so launchers use
// this instead. On failure it prints the same line as QLLM_CHECK_MSG,
//   qllm: internal check failed: <cond> at <file>:<line>: <message>
// and aborts: a bad shape handed to a launcher is a programming error, never
// user input. Host code only.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace qllm::cuda {

[[noreturn]] __attribute__((noinline, format(printf, 4, 5))) inline void launch_check_failed(
    const char* expr, const char* file, int line, const char* fmt, ...) {
  std::fprintf(stderr, "qllm: internal check failed: %s at %s:%d: ", expr, file, line);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

}  // namespace qllm::cuda

#define QLLM_LAUNCH_CHECK(cond, ...)                                                   \
  do {                                                                                 \
    if (!(cond)) ::qllm::cuda::launch_check_failed(#cond, __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
