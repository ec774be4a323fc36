// Where tests find their data.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <unistd.h>

namespace qllm::test {

// tests/data in the source tree (committed goldens and fixtures).
inline std::filesystem::path data_dir() { return QLLM_TEST_DATA_DIR; }

// The real tokenizer files and traces (../shared/data beside the checkout, or
// QLLM_SHARED_DATA at configure time). Tests that need them skip when absent.
inline std::filesystem::path shared_data_dir() { return QLLM_SHARED_DATA_DIR; }

// A fresh empty temporary folder for one test.
std::filesystem::path temp_dir(const std::string& name);

// The same folder for every call with `name` in this process (emptied on the
// first call only): a cache shared by a test binary's tests.
std::filesystem::path temp_dir_once(const std::string& name);

}  // namespace qllm::test

#define QLLM_REQUIRE_SHARED_DATA(rel)                                                     \
  do {                                                                                    \
    if (!std::filesystem::exists(::qllm::test::shared_data_dir() / (rel)))                \
      GTEST_SKIP() << "shared test data " << (::qllm::test::shared_data_dir() / (rel))   \
                   << " not found: test skipped";                                        \
  } while (0)

inline std::filesystem::path qllm::test::temp_dir(const std::string& name) {
  auto base = std::filesystem::temp_directory_path() / "qllm-tests";
  auto p = base / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

inline std::filesystem::path qllm::test::temp_dir_once(const std::string& name) {
  static std::map<std::string, std::filesystem::path> made;
  auto it = made.find(name);
  if (it == made.end()) it = made.emplace(name, temp_dir(name)).first;
  return it->second;
}
