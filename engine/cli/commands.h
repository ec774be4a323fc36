// The qllm subcommands. Each registers its options on a CLI11 app and returns
// the function that runs it (exit code). main.cpp only wires them together.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace qllm::cli {

using Run = std::function<int()>;

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
