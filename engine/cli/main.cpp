// qllm: command-line entry point.
#include "engine/cli/commands.h"
#include "engine/common/error.h"

#include <cstdio>
#include <map>

int main(int argc, char** argv) {
  CLI::App app{"qllm: mixed-priority inference for Mixture-of-Experts models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qllm 0.1.0");

  std::map<CLI::App*, qllm::cli::Run> runs;
  auto add = [&](const char* name, const char* help, auto adder) {
    CLI::App* sub = app.add_subcommand(name, help);
    runs[sub] = adder(*sub);
  };
  add("generate", "generate text for one prompt, streamed to the terminal", qllm::cli::add_generate);
  add("run", "run a mixed-priority workload and report per-class latency", qllm::cli::add_run);
  add("serve", "serve the OpenAI-compatible HTTP API (completions, chat, metrics)", qllm::cli::add_serve);
  add("bench", "replay a workload against an OpenAI-compatible server over HTTP", qllm::cli::add_bench);
  add("inspect", "describe a checkpoint: architecture, sizes, tensors, parameters", qllm::cli::add_inspect);
  add("make-model", "write a synthetic Hugging Face checkpoint with seeded weights", qllm::cli::add_make_model);
  add("tokenize", "print the token ids of UTF-8 text read from stdin", qllm::cli::add_tokenize);
  add("config", "print, document or check engine configuration", qllm::cli::add_config);
  add("devices", "list the CUDA devices qllm can use", qllm::cli::add_devices);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, run] : runs) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const qllm::Error& e) {
      std::fprintf(stderr, "qllm %s: error: %s\n", sub->get_name().c_str(), e.what());
      return 1;
    }
  }
  return 1;
}
