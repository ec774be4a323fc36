#include "engine/config/engine_config.h"

#include "engine/common/error.h"
#include "engine/common/key_values.h"
#include "engine/common/suggest.h"

// GCC 12 reports false -Wdangling-pointer positives inside yaml-cpp 0.7's
// inlined node code; silence that one warning here only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <variant>

namespace qllm {
namespace {

using Field = std::variant<std::string EngineConfig::*, int64_t EngineConfig::*,
                           double EngineConfig::*, bool EngineConfig::*>;

struct Key {
  std::string_view path;
  Field field;
  std::string_view doc;
  std::vector<std::string_view> choices = {};
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
};

constexpr double kInf = std::numeric_limits<double>::infinity();

// The one table of keys. Defaults live in EngineConfig's member initialisers.
const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      {"model.path", &EngineConfig::model_path,
       "Hugging Face checkpoint folder, or builtin:tiny-mixtral | builtin:tiny-qwen3_moe | "
       "builtin:tiny-olmoe (a small seeded model written to the cache folder on first use)"},
      {"model.dtype", &EngineConfig::model_dtype,
       "weight and activation dtype on the GPU (the CPU dispatcher computes in fp32)",
       {"bf16", "f16", "f32"}},
      {"model.synthetic_weights", &EngineConfig::model_synthetic_weights,
       "fill real-shape weights with seeded random values on the device instead of reading "
       "the safetensors files (benchmarks)"},
      {"model.max_seq_len", &EngineConfig::model_max_seq_len,
       "longest sequence (prompt + output) accepted; capped by the model's "
       "max_position_embeddings",
       {}, 1, 1 << 20},
      {"scheduler.policy", &EngineConfig::scheduler_policy,
       "fcfs-iteration: a pass runs to the end once started (the baseline); priority-layer: "
       "LS work preempts BE at layer boundaries; priority-expert: at expert boundaries",
       {"fcfs-iteration", "priority-layer", "priority-expert"}},
      {"scheduler.dispatcher", &EngineConfig::scheduler_dispatcher,
       "who runs the policy and launches work units: device (scheduler loop on the GPU), "
       "host (host thread launching graphs), cpu (plain C++ work units); auto picks the "
       "first that works in that order",
       {"auto", "device", "host", "cpu"}},
      {"scheduler.ls_slots", &EngineConfig::scheduler_ls_slots,
       "execution slots reserved for latency-sensitive batches", {}, 1, 8},
      {"scheduler.be_slots", &EngineConfig::scheduler_be_slots,
       "execution slots for best-effort batches", {}, 0, 8},
      {"scheduler.max_tokens_per_step", &EngineConfig::scheduler_max_tokens_per_step,
       "largest number of tokens one slot processes in one forward pass (sizes the slot's "
       "buffers and the largest graph bucket)",
       {}, 1, 65536},
      {"scheduler.max_seqs_per_step", &EngineConfig::scheduler_max_seqs_per_step,
       "largest number of sequences batched in one slot's forward pass", {}, 1, 4096},
      {"scheduler.prefill_chunk", &EngineConfig::scheduler_prefill_chunk,
       "prompts are prefilled in chunks of at most this many tokens, bounding how long one "
       "work unit holds the GPU",
       {}, 1, 65536},
      {"scheduler.be_max_wait_s", &EngineConfig::scheduler_be_max_wait_s,
       "anti-starvation: a BE pass whose batch has waited this long is scheduled as LS "
       "(0 disables)",
       {}, 0, kInf},
      {"scheduler.queue_prefill", &EngineConfig::scheduler_queue_prefill,
       "device dispatcher: while a slot's pass runs, publish a pass of prompt chunks behind it "
       "(in the slot's second metadata buffer), so the GPU starts it with no host round trip"},
      {"kv_cache.block_size", &EngineConfig::kv_block_size, "tokens per KV-cache block",
       {"8", "16", "32", "64"}},
      {"kv_cache.num_blocks", &EngineConfig::kv_num_blocks,
       "KV-cache blocks; 0 sizes the cache from kv_cache.gpu_memory_fraction (GPU) or as "
       "room for 16 sequences of model.max_seq_len (cpu dispatcher)",
       {}, 0, 1e9},
      {"kv_cache.gpu_memory_fraction", &EngineConfig::kv_gpu_memory_fraction,
       "fraction of GPU memory qllm may use in all (weights, activations, graphs, KV cache)",
       {}, 0.05, 0.99},
      {"sampling.temperature", &EngineConfig::sampling_temperature,
       "default temperature; 0 is greedy", {}, 0, 100},
      {"sampling.top_p", &EngineConfig::sampling_top_p, "default nucleus threshold (1 = off)",
       {}, 1e-6, 1},
      {"sampling.top_k", &EngineConfig::sampling_top_k, "default top-k (0 = off)", {}, 0, 1e9},
      {"sampling.max_tokens", &EngineConfig::sampling_max_tokens,
       "default number of tokens to generate", {}, 1, 1 << 20},
      {"sampling.seed", &EngineConfig::sampling_seed,
       "default sampling seed (each request may give its own)", {}, 0, 9.0e18},
      {"server.host", &EngineConfig::server_host, "address qllm serve listens on"},
      {"server.port", &EngineConfig::server_port, "TCP port qllm serve listens on", {}, 0,
       65535},
      {"server.max_concurrent_requests", &EngineConfig::server_max_concurrent_requests,
       "requests admitted at once; more are refused with HTTP 429", {}, 1, 1e6},
      {"server.served_model_name", &EngineConfig::server_served_model_name,
       "model name clients send and /v1/models lists (empty = the checkpoint folder's name)"},
      {"server.ls_max_priority", &EngineConfig::server_ls_max_priority,
       "a request whose 'priority' is at most this is latency-sensitive, above it best-effort "
       "(vLLM's convention: lower = more urgent, default 0)", {}, -1e9, 1e9},
      {"server.shutdown_timeout_s", &EngineConfig::server_shutdown_timeout_s,
       "on SIGINT/SIGTERM, in-flight requests get this long to finish before they are cancelled",
       {}, 0, 3600},
      {"cpu.threads", &EngineConfig::cpu_threads,
       "threads for the CPU dispatcher (0 = all hardware threads)", {}, 0, 4096},
      {"profiling.trace_path", &EngineConfig::profiling_trace_path,
       "write a Perfetto/Chrome trace of work units here at exit (empty = off)"},
      {"profiling.device_event_log", &EngineConfig::profiling_device_event_log,
       "record a globaltimer stamp per work unit on the device"},
  };
  return k;
}

std::string render(const EngineConfig& c, const Field& f) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = c.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          YAML::Emitter e;
          e << YAML::DoubleQuoted << v;
          return e.c_str();
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return render_key_number(v);
        } else {
          return std::to_string(v);
        }
      },
      f);
}

KeyType type_of(const Field& f) {
  switch (f.index()) {
    case 0: return KeyType::String;
    case 1: return KeyType::Int;
    case 2: return KeyType::Float;
    default: return KeyType::Bool;
  }
}

std::string_view type_name(KeyType t) {
  switch (t) {
    case KeyType::String: return "string";
    case KeyType::Int: return "integer";
    case KeyType::Float: return "number";
    case KeyType::Bool: return "boolean";
  }
  return "?";
}

const Key* find_key(std::string_view path) {
  for (const auto& k : keys())
    if (k.path == path) return &k;
  return nullptr;
}

[[noreturn]] void unknown_key(std::string_view what, std::string_view path) {
  std::vector<std::string> names;
  for (const auto& k : keys()) names.emplace_back(k.path);
  const std::string best = closest_match(path, names);
  fail("{}: unknown configuration key '{}'{}", what, path,
       best.empty() ? std::string(" (`qllm config --keys` lists them)")
                    : fmt::format(" (did you mean '{}'?)", best));
}

// Sets one key from its scalar text. `where` is "file:line" for messages.
void set_value(EngineConfig& c, const Key& k, const std::string& text, const std::string& where) {
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          check_key_choice(text, k.choices, where, k.path);
          c.*member = text;
        } else if constexpr (std::is_same_v<T, bool>) {
          c.*member = parse_key_bool(text, where, k.path);
        } else if constexpr (std::is_same_v<T, double>) {
          const double v = parse_key_number(text, where, k.path);
          check_key_range(v, k.min, k.max, text, where, k.path);
          c.*member = v;
        } else {
          const int64_t v = parse_key_int(text, where, k.path);
          check_key_range(double(v), k.min, k.max, text, where, k.path);
          check_key_choice(text, k.choices, where, k.path);
          c.*member = v;
        }
      },
      k.field);
}

void walk(const YAML::Node& node, const std::string& prefix, std::string_view what,
          EngineConfig& c, std::set<std::string>& seen) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    const auto& kn = it->first;
    if (!kn.IsScalar()) fail("{}: configuration keys must be plain names", what);
    const std::string path = prefix.empty() ? kn.Scalar() : prefix + "." + kn.Scalar();
    const auto& v = it->second;
    const std::string where = fmt::format("{}:{}", what, kn.Mark().line + 1);
    if (!seen.insert(path).second) fail("{}: key '{}' is given twice", where, path);
    if (v.IsMap()) {
      walk(v, path, what, c, seen);
      continue;
    }
    const Key* k = find_key(path);
    if (!k) unknown_key(where, path);
    if (v.IsNull()) {
      if (type_of(k->field) == KeyType::String) {
        set_value(c, *k, "", where);
        continue;
      }
      fail("{}: key '{}' has no value (expected {})", where, path, type_name(type_of(k->field)));
    }
    if (!v.IsScalar())
      fail("{}: key '{}' must be a single {} value, not a list or map", where, path,
           type_name(type_of(k->field)));
    set_value(c, *k, v.Scalar(), where);
  }
}

}  // namespace

std::vector<KeyDoc> config_keys() {
  const EngineConfig defaults;
  std::vector<KeyDoc> out;
  for (const auto& k : keys())
    out.push_back({k.path, type_of(k.field), render(defaults, k.field), k.doc,
                   k.choices});
  return out;
}

std::string config_keys_markdown() {
  std::string s = "| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
  for (const auto& k : config_keys()) {
    std::string doc(k.doc);
    if (!k.choices.empty() && k.type == KeyType::String) {
      doc += " (one of:";
      for (auto ch : k.choices) doc += " `" + std::string(ch) + "`";
      doc += ")";
    }
    s += fmt::format("| `{}` | {} | `{}` | {} |\n", k.path, type_name(k.type), k.default_value,
                     doc);
  }
  return s;
}

EngineConfig parse_engine_config(std::string_view yaml, std::string_view what,
                                 const EngineConfig& base) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    fail("{}:{}: invalid YAML: {}", what, e.mark.line + 1, e.msg);
  }
  EngineConfig c = base;
  if (root.IsNull()) return c;  // an empty file keeps every default
  if (!root.IsMap()) fail("{}: the top level must be a map of sections (model:, scheduler:, ...)", what);
  std::set<std::string> seen;
  walk(root, "", what, c, seen);
  validate(c, what);
  return c;
}

EngineConfig load_engine_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open configuration file", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_engine_config(ss.str(), path.string());
}

void apply_override(EngineConfig& cfg, std::string_view assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    fail("--set '{}': expected section.key=value", assignment);
  const std::string path(assignment.substr(0, eq));
  const Key* k = find_key(path);
  if (!k) unknown_key("--set", path);
  set_value(cfg, *k, std::string(assignment.substr(eq + 1)), "--set");
}

void validate(const EngineConfig& c, std::string_view what) {
  if (c.model_path.empty()) fail("{}: key 'model.path' is required", what);
  if (c.scheduler_prefill_chunk > c.scheduler_max_tokens_per_step)
    fail("{}: scheduler.prefill_chunk ({}) must not exceed scheduler.max_tokens_per_step ({})",
         what, c.scheduler_prefill_chunk, c.scheduler_max_tokens_per_step);
  if (c.scheduler_max_seqs_per_step > c.scheduler_max_tokens_per_step)
    fail("{}: scheduler.max_seqs_per_step ({}) must not exceed scheduler.max_tokens_per_step "
         "({}): every sequence in a step contributes at least one token",
         what, c.scheduler_max_seqs_per_step, c.scheduler_max_tokens_per_step);
  if (c.server_host.empty()) fail("{}: key 'server.host' must not be empty", what);
}

std::string to_yaml(const EngineConfig& c) {
  std::string out;
  std::string section;
  for (const auto& k : keys()) {
    const auto dot = k.path.find('.');
    const std::string sec(k.path.substr(0, dot));
    if (sec != section) {
      out += (section.empty() ? "" : "\n") + sec + ":\n";
      section = sec;
    }
    out += fmt::format("  {}: {}\n", k.path.substr(dot + 1), render(c, k.field));
  }
  return out;
}

}  // namespace qllm
