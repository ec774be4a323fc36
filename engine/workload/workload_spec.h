// Workload specification: what `qllm run --workload FILE` and `qllm bench`
// replay against the engine, read from YAML (configs/workloads/*.yaml).
//
// Every key, its type, default and meaning is defined once, in the table in
// workload_spec.cpp (the defaults are the member initialisers below);
// `workload_keys_markdown()` prints it and engine/workload/README.md holds a
// copy that a test keeps in step. Loading is strict as for the engine config:
// unknown keys (with a "did you mean"), wrong types, out-of-range values and
// keys that do not apply to the chosen arrival process are errors naming the
// file, the line and the key; a validation pass checks invariants across keys.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace qllm::workload {

// Priority class; the values match qllm::sched::PriorityClass.
enum class RequestClass : uint8_t { LS = 0, BE = 1 };

std::string_view class_name(RequestClass c);  // "LS", "BE"

// A distribution of token counts. In YAML: an integer (fixed), a two-element
// list [min, max] (uniform, inclusive), or `sharegpt`.
struct LengthDist {
  enum class Kind : uint8_t { Inherit, Fixed, Uniform, ShareGPT };
  Kind kind = Kind::Inherit;  // Inherit: per-class key left empty, use lengths.*
  int64_t min = 0;            // Fixed: min == max
  int64_t max = 0;

  static LengthDist fixed(int64_t n) { return {Kind::Fixed, n, n}; }
  static LengthDist uniform(int64_t lo, int64_t hi) { return {Kind::Uniform, lo, hi}; }
  static LengthDist sharegpt() { return {Kind::ShareGPT, 0, 0}; }
  bool operator==(const LengthDist&) const = default;
};

// Renders a LengthDist the way it is written in YAML ("" for Inherit).
std::string to_string(const LengthDist& d);

// Per-class service-level objectives; 0 = no objective on that quantity.
struct Slo {
  double ttft_s = 0;
  double tpot_s = 0;
  double e2e_s = 0;
  bool any() const { return ttft_s > 0 || tpot_s > 0 || e2e_s > 0; }
  bool operator==(const Slo&) const = default;
};

// Renders an SLO for tables: "TTFT<=3s, TPOT<=0.1s" ("none" without any).
std::string to_string(const Slo& s);

struct WorkloadSpec {
  std::string name;
  int64_t seed = 0;
  int64_t num_requests = 0;
  double duration_s = 0;

  // arrivals
  std::string arrivals_process = "poisson";
  double arrivals_rate = 1.0;
  double arrivals_burstiness = 1.0;
  std::string arrivals_trace;
  std::string arrivals_trace_format = "auto";
  double arrivals_rate_scale = 1.0;
  int64_t arrivals_max_rows = 0;
  double arrivals_jitter_s = 0;
  bool arrivals_trace_lengths = true;

  double ls_fraction = 0.2;
  int64_t be_concurrency = 0;

  // lengths (shared by both classes unless ls.* / be.* override them)
  LengthDist lengths_prompt = LengthDist::sharegpt();
  LengthDist lengths_output = LengthDist::sharegpt();
  int64_t lengths_max_prompt = 1024;
  int64_t lengths_max_total = 2048;
  std::string lengths_sharegpt_source = "auto";

  // per class (0 = no objective)
  LengthDist ls_prompt;
  LengthDist ls_output;
  double ls_ttft_s = 0;
  double ls_tpot_s = 0;
  double ls_e2e_s = 0;
  LengthDist be_prompt;
  LengthDist be_output;
  double be_ttft_s = 0;
  double be_tpot_s = 0;
  double be_e2e_s = 0;

  // Not keys: where the spec came from (errors, JSON) and the keys the file set.
  std::string source;
  std::set<std::string> keys_set;

  bool closed_loop() const { return be_concurrency > 0; }
  // The prompt / output distribution of a class after inheritance.
  const LengthDist& prompt_dist(RequestClass c) const;
  const LengthDist& output_dist(RequestClass c) const;
  Slo slo(RequestClass c) const;
};

enum class WorkloadKeyType { String, Int, Float, Bool, Length };

struct WorkloadKeyDoc {
  std::string_view path;  // "arrivals.rate"
  WorkloadKeyType type;
  std::string default_value;  // rendered as YAML
  std::string_view doc;
  std::vector<std::string_view> choices;  // empty: any value of the type
};

// Every key with its default, in declaration order.
std::vector<WorkloadKeyDoc> workload_keys();

// The keys as a Markdown table (engine/workload/README.md).
std::string workload_keys_markdown();

// Loads a workload file. Throws qllm::Error naming the file, line and key.
WorkloadSpec load_workload_spec(const std::filesystem::path& path);

// Parses YAML text; `what` names the source in errors.
WorkloadSpec parse_workload_spec(std::string_view yaml, std::string_view what);

// Checks invariants across keys; throws qllm::Error naming `what` and the keys.
void validate(const WorkloadSpec& spec, std::string_view what);

// Every key and its value as nested JSON (sections as objects), plus "source".
nlohmann::json spec_to_json(const WorkloadSpec& spec);

}  // namespace qllm::workload
