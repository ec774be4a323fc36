// Running the qllm binary from a test, as a user runs it.
#pragma once

#include "tests/test_paths.h"

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <sys/wait.h>

namespace qllm::test {

struct CliResult {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// Runs `qllm <args>` through the shell with `stdin_text` on its standard
// input and its own cache folder (one per `cache_name`, per test process).
inline CliResult run_qllm(const std::string& args, const std::string& stdin_text = "",
                          const std::string& cache_name = "cli-cache") {
  const auto cache = temp_dir_once(cache_name);
  const auto in = temp_dir(cache_name + "-stdin") / "in.txt";
  {
    std::ofstream f(in, std::ios::binary);
    f << stdin_text;
  }
  const std::string cmd = "QLLM_CACHE_DIR='" + cache.string() + "' '" + QLLM_BINARY + "' " + args + " < '" +
                          in.string() + "' 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace qllm::test
