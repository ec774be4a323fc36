#include "engine/cli/commands.h"

namespace qllm::cli {

void EngineOptions::add_to(CLI::App& app, bool with_model) {
  app.add_option("-c,--config", config, "engine configuration YAML (default: built-in defaults)");
  app.add_option("--set", sets, "override a configuration key: section.key=value (repeatable)");
  if (with_model)
    app.add_option("-m,--model", model, "checkpoint folder or builtin:tiny-<arch> (overrides model.path)");
}

EngineConfig EngineOptions::load(const std::function<void(EngineConfig&)>& adjust) const {
  EngineConfig cfg = config.empty() ? EngineConfig{} : load_engine_config(config);
  for (const auto& s : sets) apply_override(cfg, s);
  if (!model.empty()) cfg.model_path = model;
  if (adjust) adjust(cfg);
  validate(cfg, config.empty() ? "configuration" : config);
  return cfg;
}

}  // namespace qllm::cli
