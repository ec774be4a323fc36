#include "engine/workload/workload_spec.h"

#include "engine/common/error.h"
#include "engine/common/key_values.h"
#include "engine/common/suggest.h"

// GCC 12 reports false -Wdangling-pointer positives inside yaml-cpp 0.7's
// inlined node code; silence that one warning here only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <variant>

namespace qllm::workload {
namespace {

using Field =
    std::variant<std::string WorkloadSpec::*, int64_t WorkloadSpec::*, double WorkloadSpec::*,
                 bool WorkloadSpec::*, LengthDist WorkloadSpec::*>;

struct Key {
  std::string_view path;
  Field field;
  std::string_view doc;
  std::vector<std::string_view> choices = {};
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;  // the value must be > min
};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::string_view kLengthForms = "N (fixed), [min, max] (uniform, inclusive) or sharegpt";

// The one table of keys. Defaults live in WorkloadSpec's member initialisers.
const std::vector<Key>& keys() {
  using S = WorkloadSpec;
  // clang-format off
  static const std::vector<Key> k = {
      {"name", &S::name, "name of the workload, shown in tables and JSON"},
      {"seed", &S::seed,
       "seed of every random draw (arrival gaps, classes, lengths, trace jitter): the same "
       "seed gives the same requests",
       {}, 0, 9.0e18},
      {"num_requests", &S::num_requests,
       "requests in the open-loop stream (0 = bounded by duration_s only; with a trace, "
       "0 = every row read)",
       {}, 0, 1e8},
      {"duration_s", &S::duration_s,
       "seconds of open-loop arrivals: later arrivals are dropped, and closed-loop BE "
       "requests stop being issued (0 = bounded by num_requests only)",
       {}, 0, kInf},
      {"arrivals.process", &S::arrivals_process,
       "poisson: exponential gaps; gamma: gamma gaps with arrivals.burstiness; trace: "
       "replay the arrival times of arrivals.trace",
       {"poisson", "gamma", "trace"}},
      {"arrivals.rate", &S::arrivals_rate,
       "mean request rate of the open stream in requests/s (poisson, gamma)", {}, 0, 1e9, true},
      {"arrivals.burstiness", &S::arrivals_burstiness,
       "gamma shape: 1 is Poisson, below 1 burstier; inter-arrival CV = 1/sqrt(burstiness) "
       "(as vLLM's serving benchmark)",
       {}, 0, 1e6, true},
      {"arrivals.trace", &S::arrivals_trace,
       "trace file to replay: relative to the traces folder (shared/data/traces), to the "
       "workload file's folder, or absolute"},
      {"arrivals.trace_format", &S::arrivals_trace_format,
       "azure: Azure LLM inference CSV (TIMESTAMP,ContextTokens,GeneratedTokens); mooncake: "
       "Mooncake JSON lines (timestamp in ms, input_length, output_length); auto: by the "
       "file's extension (.csv, .jsonl)",
       {"auto", "azure", "mooncake"}},
      {"arrivals.rate_scale", &S::arrivals_rate_scale,
       "trace: multiply the trace's request rate by this (its arrival times are divided by it)",
       {}, 0, 1e6, true},
      {"arrivals.max_rows", &S::arrivals_max_rows,
       "trace: read at most this many rows from the start of the file (0 = all)", {}, 0, 1e9},
      {"arrivals.jitter_s", &S::arrivals_jitter_s,
       "trace: add a seeded uniform offset in [0, jitter_s) to each timestamp before scaling "
       "(Mooncake's conversation trace is bucketed to about 3 s)",
       {}, 0, kInf},
      {"arrivals.trace_lengths", &S::arrivals_trace_lengths,
       "trace: take prompt and output lengths from the trace, clamped to the caps (false: "
       "draw them from lengths.*)"},
      {"ls_fraction", &S::ls_fraction,
       "each open-loop request is LS with this probability (seeded), else BE", {}, 0, 1},
      {"be_concurrency", &S::be_concurrency,
       "closed-loop BE background: keep this many BE requests outstanding, a new one "
       "arriving when one finishes; the open stream is then all LS (0 = open loop only)",
       {}, 0, 1e6},
      {"lengths.prompt", &S::lengths_prompt, "prompt tokens of both classes"},
      {"lengths.output", &S::lengths_output,
       "output tokens of both classes (the request's max_tokens; sharegpt takes the paired "
       "draw when lengths.prompt is sharegpt too)"},
      {"lengths.max_prompt", &S::lengths_max_prompt,
       "longest prompt: drawn pairs above it are drawn again (as vLLM filters ShareGPT); "
       "trace lengths are clamped",
       {}, 1, 1 << 24},
      {"lengths.max_total", &S::lengths_max_total,
       "longest prompt + output: drawn pairs above it are drawn again; trace outputs are "
       "clamped",
       {}, 2, 1 << 24},
      {"lengths.sharegpt_source", &S::lengths_sharegpt_source,
       "sharegpt draws: file: (prompt, output) rows of "
       "sharegpt_lengths/sharegpt_8k_filtered_stats_llama2_tokenizer.csv in the traces "
       "folder; fitted: a log-normal fitted to that file (length_dist.cpp); auto: the file "
       "when present, else fitted",
       {"auto", "file", "fitted"}},
      {"ls.prompt", &S::ls_prompt, "LS prompt tokens (null = lengths.prompt)"},
      {"ls.output", &S::ls_output, "LS output tokens (null = lengths.output)"},
      {"ls.ttft_s", &S::ls_ttft_s, "LS SLO on time to first token, s (0 = none)", {}, 0, kInf},
      {"ls.tpot_s", &S::ls_tpot_s, "LS SLO on time per output token, s (0 = none)", {}, 0, kInf},
      {"ls.e2e_s", &S::ls_e2e_s, "LS SLO on end-to-end latency, s (0 = none)", {}, 0, kInf},
      {"be.prompt", &S::be_prompt, "BE prompt tokens (null = lengths.prompt)"},
      {"be.output", &S::be_output, "BE output tokens (null = lengths.output)"},
      {"be.ttft_s", &S::be_ttft_s, "BE SLO on time to first token, s (0 = none)", {}, 0, kInf},
      {"be.tpot_s", &S::be_tpot_s, "BE SLO on time per output token, s (0 = none)", {}, 0, kInf},
      {"be.e2e_s", &S::be_e2e_s, "BE SLO on end-to-end latency, s (0 = none)", {}, 0, kInf},
  };
  // clang-format on
  return k;
}

WorkloadKeyType type_of(const Field& f) {
  switch (f.index()) {
    case 0: return WorkloadKeyType::String;
    case 1: return WorkloadKeyType::Int;
    case 2: return WorkloadKeyType::Float;
    case 3: return WorkloadKeyType::Bool;
    default: return WorkloadKeyType::Length;
  }
}

std::string_view type_name(WorkloadKeyType t) {
  switch (t) {
    case WorkloadKeyType::String: return "string";
    case WorkloadKeyType::Int: return "integer";
    case WorkloadKeyType::Float: return "number";
    case WorkloadKeyType::Bool: return "boolean";
    case WorkloadKeyType::Length: return "length";
  }
  return "?";
}

std::string render(const WorkloadSpec& s, const Field& f) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = s.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          YAML::Emitter e;
          e << YAML::DoubleQuoted << v;
          return e.c_str();
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return render_key_number(v);
        } else if constexpr (std::is_same_v<T, LengthDist>) {
          return v.kind == LengthDist::Kind::Inherit ? "null" : to_string(v);
        } else {
          return std::to_string(v);
        }
      },
      f);
}

const Key* find_key(std::string_view path) {
  for (const auto& k : keys())
    if (k.path == path) return &k;
  return nullptr;
}

bool is_section(std::string_view path) {
  for (const auto& k : keys())
    if (k.path.size() > path.size() && k.path.substr(0, path.size()) == path &&
        k.path[path.size()] == '.')
      return true;
  return false;
}

[[noreturn]] void unknown_key(std::string_view where, std::string_view path) {
  // Sections too: a misspelt section is reported with its name alone.
  std::vector<std::string> names;
  for (const auto& k : keys()) {
    for (size_t dot = k.path.find('.'); dot != std::string_view::npos;
         dot = k.path.find('.', dot + 1))
      names.emplace_back(k.path.substr(0, dot));
    names.emplace_back(k.path);
  }
  const std::string best = closest_match(path, names);
  fail("{}: unknown workload key '{}'{}", where, path,
       best.empty() ? std::string(" (engine/workload/README.md lists them)")
                    : fmt::format(" (did you mean '{}'?)", best));
}

LengthDist parse_length(const YAML::Node& v, const std::string& where, std::string_view path) {
  auto bad = [&](const std::string& got) -> LengthDist {
    fail("{}: key '{}' must be {}, got {}", where, path, kLengthForms, got);
  };
  auto positive = [&](int64_t n) {
    if (n < 1) fail("{}: key '{}': token counts must be at least 1, got {}", where, path, n);
    return n;
  };
  if (v.IsNull()) return {};
  if (v.IsScalar()) {
    const std::string& t = v.Scalar();
    if (t == "sharegpt") return LengthDist::sharegpt();
    if (t.empty() || !(std::isdigit(static_cast<unsigned char>(t[0])) || t[0] == '-'))
      return bad("'" + t + "'");
    return LengthDist::fixed(positive(parse_key_int(t, where, path)));
  }
  if (v.IsSequence()) {
    if (v.size() != 2 || !v[0].IsScalar() || !v[1].IsScalar())
      return bad(fmt::format("a list of {} items", v.size()));
    const int64_t lo = positive(parse_key_int(v[0].Scalar(), where, path));
    const int64_t hi = positive(parse_key_int(v[1].Scalar(), where, path));
    if (lo > hi) fail("{}: key '{}': uniform [{}, {}] has min > max", where, path, lo, hi);
    return LengthDist::uniform(lo, hi);
  }
  return bad("a map");
}

// Sets one key from its YAML node. `where` is "file:line" for messages.
void set_value(WorkloadSpec& s, const Key& k, const YAML::Node& v, const std::string& where) {
  const WorkloadKeyType type = type_of(k.field);
  if (type != WorkloadKeyType::Length) {
    if (v.IsNull() && type != WorkloadKeyType::String)
      fail("{}: key '{}' has no value (expected {})", where, k.path, type_name(type));
    if (!v.IsNull() && !v.IsScalar())
      fail("{}: key '{}' must be a single {} value, not a list or map", where, k.path,
           type_name(type));
  }
  const std::string text = v.IsScalar() ? v.Scalar() : std::string();
  auto check_range = [&](double x) {
    if (k.min_exclusive && !(x > k.min))
      fail("{}: key '{}' = {} must be greater than {}", where, k.path, text, k.min);
    check_key_range(x, k.min, k.max, text, where, k.path);
  };
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(s.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          check_key_choice(text, k.choices, where, k.path);
          s.*member = text;
        } else if constexpr (std::is_same_v<T, bool>) {
          s.*member = parse_key_bool(text, where, k.path);
        } else if constexpr (std::is_same_v<T, double>) {
          const double x = parse_key_number(text, where, k.path);
          check_range(x);
          s.*member = x;
        } else if constexpr (std::is_same_v<T, LengthDist>) {
          s.*member = parse_length(v, where, k.path);
        } else {
          const int64_t x = parse_key_int(text, where, k.path);
          check_range(double(x));
          s.*member = x;
        }
      },
      k.field);
}

void walk(const YAML::Node& node, const std::string& prefix, std::string_view what,
          WorkloadSpec& s) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    const auto& kn = it->first;
    if (!kn.IsScalar()) fail("{}: workload keys must be plain names", what);
    const std::string path = prefix.empty() ? kn.Scalar() : prefix + "." + kn.Scalar();
    const auto& v = it->second;
    const std::string where = fmt::format("{}:{}", what, kn.Mark().line + 1);
    if (s.keys_set.count(path)) fail("{}: key '{}' is given twice", where, path);
    s.keys_set.insert(path);
    const Key* k = find_key(path);
    if (!k && is_section(path)) {
      if (!v.IsMap()) fail("{}: '{}' is a section of keys ({}.*), not a value", where, path, path);
      walk(v, path, what, s);
      continue;
    }
    if (!k) unknown_key(where, path);
    set_value(s, *k, v, where);
  }
}

std::string list_keys(const WorkloadSpec& s, std::string_view prefix) {
  std::string out;
  for (const auto& k : s.keys_set)
    if (std::string_view(k).substr(0, prefix.size()) == prefix && find_key(k))
      out += (out.empty() ? "'" : ", '") + k + "'";
  return out;
}

int64_t min_tokens(const LengthDist& d) { return d.kind == LengthDist::Kind::ShareGPT ? 1 : d.min; }

nlohmann::json length_json(const LengthDist& d) {
  switch (d.kind) {
    case LengthDist::Kind::Inherit: return nullptr;
    case LengthDist::Kind::Fixed: return d.min;
    case LengthDist::Kind::Uniform: return nlohmann::json::array({d.min, d.max});
    case LengthDist::Kind::ShareGPT: return "sharegpt";
  }
  return nullptr;
}

}  // namespace

std::string_view class_name(RequestClass c) { return c == RequestClass::LS ? "LS" : "BE"; }

std::string to_string(const LengthDist& d) {
  switch (d.kind) {
    case LengthDist::Kind::Inherit: return "";
    case LengthDist::Kind::Fixed: return std::to_string(d.min);
    case LengthDist::Kind::Uniform: return fmt::format("[{}, {}]", d.min, d.max);
    case LengthDist::Kind::ShareGPT: return "sharegpt";
  }
  return "";
}

std::string to_string(const Slo& s) {
  std::string out;
  auto add = [&](std::string_view name, double v) {
    if (v > 0) out += fmt::format("{}{}<={}s", out.empty() ? "" : ", ", name, v);
  };
  add("TTFT", s.ttft_s);
  add("TPOT", s.tpot_s);
  add("E2E", s.e2e_s);
  return out.empty() ? "none" : out;
}

const LengthDist& WorkloadSpec::prompt_dist(RequestClass c) const {
  const LengthDist& d = c == RequestClass::LS ? ls_prompt : be_prompt;
  return d.kind == LengthDist::Kind::Inherit ? lengths_prompt : d;
}

const LengthDist& WorkloadSpec::output_dist(RequestClass c) const {
  const LengthDist& d = c == RequestClass::LS ? ls_output : be_output;
  return d.kind == LengthDist::Kind::Inherit ? lengths_output : d;
}

Slo WorkloadSpec::slo(RequestClass c) const {
  if (c == RequestClass::LS) return {ls_ttft_s, ls_tpot_s, ls_e2e_s};
  return {be_ttft_s, be_tpot_s, be_e2e_s};
}

std::vector<WorkloadKeyDoc> workload_keys() {
  const WorkloadSpec defaults;
  std::vector<WorkloadKeyDoc> out;
  for (const auto& k : keys())
    out.push_back({k.path, type_of(k.field), render(defaults, k.field), k.doc, k.choices});
  return out;
}

std::string workload_keys_markdown() {
  std::string s = "| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
  for (const auto& k : workload_keys()) {
    std::string doc(k.doc);
    if (!k.choices.empty()) {
      doc += " (one of:";
      for (auto ch : k.choices) doc += " `" + std::string(ch) + "`";
      doc += ")";
    }
    if (k.type == WorkloadKeyType::Length) doc += std::string(": ") + std::string(kLengthForms);
    s +=
        fmt::format("| `{}` | {} | `{}` | {} |\n", k.path, type_name(k.type), k.default_value, doc);
  }
  return s;
}

WorkloadSpec parse_workload_spec(std::string_view yaml, std::string_view what) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    fail("{}:{}: invalid YAML: {}", what, e.mark.line + 1, e.msg);
  }
  WorkloadSpec s;
  s.source = std::string(what);
  if (!root.IsNull()) {
    if (!root.IsMap())
      fail("{}: the top level must be a map of keys (name:, arrivals:, ...)", what);
    walk(root, "", what, s);
  }
  validate(s, what);
  return s;
}

WorkloadSpec load_workload_spec(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open workload file", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_workload_spec(ss.str(), path.string());
}

void validate(const WorkloadSpec& s, std::string_view what) {
  auto given = [&](std::string_view key) { return s.keys_set.count(std::string(key)) > 0; };
  const bool trace = s.arrivals_process == "trace";
  if (trace) {
    if (s.arrivals_trace.empty())
      fail("{}: arrivals.process is trace but key 'arrivals.trace' (the file) is missing", what);
    for (auto key : {"arrivals.rate", "arrivals.burstiness"})
      if (given(key))
        fail("{}: key '{}' does not apply to arrivals.process trace (use arrivals.rate_scale)",
             what, key);
  } else {
    for (auto key : {"arrivals.trace", "arrivals.trace_format", "arrivals.rate_scale",
                     "arrivals.max_rows", "arrivals.jitter_s", "arrivals.trace_lengths"})
      if (given(key))
        fail("{}: key '{}' applies only to arrivals.process trace (this is {})", what, key,
             s.arrivals_process);
    if (given("arrivals.burstiness") && s.arrivals_process != "gamma")
      fail("{}: key 'arrivals.burstiness' applies only to arrivals.process gamma", what);
    if (s.num_requests == 0 && s.duration_s == 0)
      fail("{}: set 'num_requests' or 'duration_s' to bound the {} arrival stream", what,
           s.arrivals_process);
  }
  if (s.closed_loop() && given("ls_fraction"))
    fail(
        "{}: key 'ls_fraction' does not apply with be_concurrency > 0: the open stream is "
        "all LS and BE is the closed-loop background",
        what);
  if (trace && s.arrivals_trace_lengths) {
    const std::string unused = list_keys(s, "lengths.prompt") + list_keys(s, "lengths.output") +
                               list_keys(s, "ls.prompt") + list_keys(s, "ls.output") +
                               list_keys(s, "be.prompt") + list_keys(s, "be.output");
    if (!unused.empty() && !s.closed_loop())
      fail(
          "{}: {} do not apply while arrivals.trace_lengths is true (lengths come from the "
          "trace)",
          what, unused);
  }
  if (s.lengths_max_prompt >= s.lengths_max_total)
    fail(
        "{}: lengths.max_prompt ({}) must be below lengths.max_total ({}): every request "
        "generates at least one token",
        what, s.lengths_max_prompt, s.lengths_max_total);
  for (RequestClass c : {RequestClass::LS, RequestClass::BE}) {
    const int64_t p = min_tokens(s.prompt_dist(c));
    const int64_t o = min_tokens(s.output_dist(c));
    if (p > s.lengths_max_prompt)
      fail("{}: {} prompts of at least {} tokens can never fit lengths.max_prompt ({})", what,
           class_name(c), p, s.lengths_max_prompt);
    if (p + o > s.lengths_max_total)
      fail("{}: {} prompt + output of at least {} tokens can never fit lengths.max_total ({})",
           what, class_name(c), p + o, s.lengths_max_total);
  }
}

nlohmann::json spec_to_json(const WorkloadSpec& s) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& k : keys()) {
    const auto dot = k.path.find('.');
    nlohmann::json& slot =
        dot == std::string_view::npos
            ? out[std::string(k.path)]
            : out[std::string(k.path.substr(0, dot))][std::string(k.path.substr(dot + 1))];
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(s.*member)>;
          if constexpr (std::is_same_v<T, LengthDist>) {
            slot = length_json(s.*member);
          } else {
            slot = s.*member;
          }
        },
        k.field);
  }
  out["source"] = s.source;
  return out;
}

}  // namespace qllm::workload
