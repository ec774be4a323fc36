// Checking user-facing errors: run a callable, expect qllm::Error, look at
// its message.
#pragma once

#include "engine/common/error.h"

#include <gtest/gtest.h>

#include <string>

namespace qllm::test {

// Runs f and returns the message of the qllm::Error it throws (a test failure
// when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const qllm::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no qllm::Error thrown";
  return {};
}

// Runs f and returns the message of the qllm::Error it throws, or an empty
// string when it throws none (for loops that step until an error comes).
template <typename F>
std::string error_or_empty(F&& f) {
  try {
    f();
  } catch (const qllm::Error& e) {
    return e.what();
  }
  return {};
}

}  // namespace qllm::test

#define EXPECT_HAS(msg, needle) EXPECT_NE((msg).find(needle), std::string::npos) << (msg)
