// qllm config: the engine configuration keys, defaults and validation.
#include "engine/cli/commands.h"
#include "engine/config/engine_config.h"

#include <cstdio>

namespace qllm::cli {

Run add_config(CLI::App& app) {
  struct Opts {
    bool keys = false, defaults = false;
    std::string file;
    std::vector<std::string> sets;
  };
  auto o = std::make_shared<Opts>();
  app.add_flag("--keys", o->keys, "print every key with its type, default and meaning (Markdown)");
  app.add_flag("--defaults", o->defaults, "print the default configuration as YAML");
  app.add_option("--check", o->file, "load and validate a YAML file, then print it resolved");
  app.add_option("--set", o->sets, "override a key: section.key=value (repeatable)");
  return [o]() -> int {
    if (o->keys) {
      std::fputs(config_keys_markdown().c_str(), stdout);
      return 0;
    }
    if (o->defaults) {
      std::fputs("# qllm engine configuration: every key with its default.\n"
                 "# `qllm config --keys` documents each key.\n",
                 stdout);
      std::fputs(to_yaml(EngineConfig{}).c_str(), stdout);
      return 0;
    }
    EngineConfig c = o->file.empty() ? EngineConfig{} : load_engine_config(o->file);
    for (const auto& s : o->sets) apply_override(c, s);
    validate(c, o->file.empty() ? "--set" : o->file);
    std::fputs(to_yaml(c).c_str(), stdout);
    return 0;
  };
}

}  // namespace qllm::cli
