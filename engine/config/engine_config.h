// Engine configuration: every key, its type, default and meaning, in one place.
//
// The defaults are the member initialisers of EngineConfig below; the table in
// engine_config.cpp (kKeys) gives each key its YAML path, documentation and
// allowed values. `qllm config --keys` prints that table; configs/default.yaml
// lists every key with its default (a test keeps the two in step).
//
// Loading is strict: unknown keys, wrong types and invalid values are errors
// that name the file and the key; a validation pass then checks invariants
// across keys (e.g. prefill_chunk <= max_tokens_per_step).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

struct EngineConfig {
  // model
  std::string model_path = "builtin:tiny-mixtral";
  std::string model_dtype = "bf16";
  bool model_synthetic_weights = false;
  int64_t model_max_seq_len = 4096;

  // scheduler
  std::string scheduler_policy = "priority-expert";
  std::string scheduler_dispatcher = "auto";
  int64_t scheduler_ls_slots = 1;
  int64_t scheduler_be_slots = 1;
  int64_t scheduler_max_tokens_per_step = 256;
  int64_t scheduler_max_seqs_per_step = 32;
  int64_t scheduler_prefill_chunk = 128;
  double scheduler_be_max_wait_s = 5.0;
  bool scheduler_queue_prefill = true;

  // kv_cache
  int64_t kv_block_size = 16;
  int64_t kv_num_blocks = 0;
  double kv_gpu_memory_fraction = 0.85;

  // sampling (request defaults)
  double sampling_temperature = 0.0;
  double sampling_top_p = 1.0;
  int64_t sampling_top_k = 0;
  int64_t sampling_max_tokens = 64;
  int64_t sampling_seed = 0;

  // server
  std::string server_host = "127.0.0.1";
  int64_t server_port = 8000;
  int64_t server_max_concurrent_requests = 256;
  std::string server_served_model_name;  // empty: the checkpoint folder's name
  int64_t server_ls_max_priority = 0;
  double server_shutdown_timeout_s = 30.0;

  // cpu dispatcher
  int64_t cpu_threads = 0;

  // profiling
  std::string profiling_trace_path;
  bool profiling_device_event_log = false;
};

enum class KeyType { String, Int, Float, Bool };

struct KeyDoc {
  std::string_view path;  // "scheduler.policy"
  KeyType type;
  std::string default_value;  // rendered as YAML
  std::string_view doc;
  std::vector<std::string_view> choices;  // empty: any value of the type
};

// Every key with its default, in declaration order.
std::vector<KeyDoc> config_keys();

// The keys as a Markdown table (README, `qllm config --keys`).
std::string config_keys_markdown();

// Loads a YAML file on top of the defaults. Throws qllm::Error naming the file
// and the key on any unknown key, wrong type or invalid value.
EngineConfig load_engine_config(const std::filesystem::path& path);

// Parses YAML text on top of `base`; `what` names the source in errors.
EngineConfig parse_engine_config(std::string_view yaml, std::string_view what,
                                 const EngineConfig& base = {});

// Applies one "section.key=value" override (command-line --set).
void apply_override(EngineConfig& cfg, std::string_view assignment);

// Checks invariants across keys; throws qllm::Error naming `what` and the keys.
void validate(const EngineConfig& cfg, std::string_view what);

// Renders the whole configuration as YAML (every key).
std::string to_yaml(const EngineConfig& cfg);

}  // namespace qllm
