// The qllm subcommands. Each registers its options on a CLI11 app and returns
// the function that runs it (exit code). main.cpp only wires them together.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "engine/config/engine_config.h"

namespace qllm::cli {

using Run = std::function<int()>;

// -c CONFIG, --set key=value and -m MODEL, shared by the engine commands.
struct EngineOptions {
  std::string config, model;
  std::vector<std::string> sets;
  // Registers -c and --set (and -m when with_model).
  void add_to(CLI::App& app, bool with_model = true);
  // -c's file (or the built-in defaults), then each --set, then -m, then
  // `adjust` (command-line flags that override keys); validated. Throws
  // qllm::Error naming the file or the override.
  EngineConfig load(const std::function<void(EngineConfig&)>& adjust = {}) const;
};

Run add_config(CLI::App& app);
Run add_inspect(CLI::App& app);
Run add_make_model(CLI::App& app);
Run add_tokenize(CLI::App& app);
Run add_generate(CLI::App& app);
Run add_run(CLI::App& app);
Run add_serve(CLI::App& app);
Run add_bench(CLI::App& app);
Run add_devices(CLI::App& app);

}  // namespace qllm::cli
