// Workload specs: strict YAML loading (unknown keys, wrong types, bad length
// distributions, out-of-range values, keys that do not apply), the key table
// and its copy in engine/workload/README.md, and the shipped configs/workloads.
#include "engine/workload/workload_spec.h"
#include "engine/common/error.h"
#include "engine/workload/generator.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include "tests/test_errors.h"
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using namespace qllm::workload;

namespace {

// Whether `text` contains `part`, printing both when not.
::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not found in:\n" << text;
}

using qllm::test::error_of;

std::string parse_error(std::string_view yaml) {
  return error_of([&] { parse_workload_spec(yaml, "w.yaml"); });
}

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::filesystem::path kSource = QLLM_SOURCE_DIR;

}  // namespace

TEST(WorkloadSpec, ParsesEveryKind) {
  const auto s = parse_workload_spec(R"(
name: mix
seed: 7
num_requests: 100
duration_s: 30.5
arrivals:
  process: gamma
  rate: 4.5
  burstiness: 0.5
ls_fraction: 0.3
lengths:
  prompt: [16, 64]
  output: sharegpt
  max_prompt: 512
  max_total: 1024
  sharegpt_source: fitted
ls:
  output: 8
  ttft_s: 0.5
  tpot_s: 0.05
be:
  prompt:
  e2e_s: 60
)",
                                     "w.yaml");
  EXPECT_EQ(s.name, "mix");
  EXPECT_EQ(s.seed, 7);
  EXPECT_EQ(s.num_requests, 100);
  EXPECT_DOUBLE_EQ(s.duration_s, 30.5);
  EXPECT_EQ(s.arrivals_process, "gamma");
  EXPECT_DOUBLE_EQ(s.arrivals_rate, 4.5);
  EXPECT_DOUBLE_EQ(s.arrivals_burstiness, 0.5);
  EXPECT_DOUBLE_EQ(s.ls_fraction, 0.3);
  EXPECT_EQ(s.lengths_prompt, LengthDist::uniform(16, 64));
  EXPECT_EQ(s.lengths_output, LengthDist::sharegpt());
  EXPECT_EQ(s.prompt_dist(RequestClass::LS), LengthDist::uniform(16, 64));
  EXPECT_EQ(s.output_dist(RequestClass::LS), LengthDist::fixed(8));
  EXPECT_EQ(s.prompt_dist(RequestClass::BE), LengthDist::uniform(16, 64));  // null inherits
  EXPECT_EQ(s.output_dist(RequestClass::BE), LengthDist::sharegpt());
  EXPECT_EQ(s.slo(RequestClass::LS), (Slo{0.5, 0.05, 0}));
  EXPECT_EQ(s.slo(RequestClass::BE), (Slo{0, 0, 60}));
  EXPECT_EQ(to_string(s.slo(RequestClass::LS)), "TTFT<=0.5s, TPOT<=0.05s");
  EXPECT_EQ(s.source, "w.yaml");
}

TEST(WorkloadSpec, UnknownKeyNamesFileLineAndSuggestion) {
  const auto e = parse_error("num_requests: 10\narrivals:\n  process: poisson\n  rat: 5\n");
  EXPECT_TRUE(contains(e, "w.yaml:4"));
  EXPECT_TRUE(contains(e, "unknown workload key 'arrivals.rat'"));
  EXPECT_TRUE(contains(e, "did you mean 'arrivals.rate'"));
  const auto top = parse_error("num_requests: 10\nbogus_setting: 1\n");
  EXPECT_TRUE(contains(top, "w.yaml:2: unknown workload key 'bogus_setting'"));
  const auto sect = parse_error("num_requests: 10\nfoo:\n  bar: 1\n");
  EXPECT_TRUE(contains(sect, "unknown workload key 'foo'"));
}

TEST(WorkloadSpec, WrongTypesNameTheKey) {
  auto e = parse_error("num_requests: many\n");
  EXPECT_TRUE(contains(e, "w.yaml:1: key 'num_requests' must be an integer, got 'many'"));
  e = parse_error("num_requests: 10.5\n");
  EXPECT_TRUE(contains(e, "key 'num_requests' must be an integer"));
  e = parse_error("num_requests: 10\narrivals:\n  rate: fast\n");
  EXPECT_TRUE(contains(e, "w.yaml:3: key 'arrivals.rate' must be a finite number, got 'fast'"));
  e = parse_error("num_requests: 10\narrivals:\n  rate: [1, 2]\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.rate' must be a single number value"));
  e = parse_error("num_requests: 10\narrivals: poisson\n");
  EXPECT_TRUE(contains(e, "'arrivals' is a section of keys"));
  e = parse_error("num_requests: 10\narrivals:\n  process: weibull\n");
  EXPECT_TRUE(
      contains(e, "key 'arrivals.process' = 'weibull' is not one of: poisson, gamma, trace"));
  e = parse_error("num_requests: 10\nls_fraction: 1.5\n");
  EXPECT_TRUE(contains(e, "key 'ls_fraction' = 1.5 is out of range [0, 1]"));
  e = parse_error("seed:\nnum_requests: 10\n");
  EXPECT_TRUE(contains(e, "key 'seed' has no value (expected integer)"));
  e = parse_error("arrivals:\n  process: trace\n  trace: x.csv\n  trace_lengths: yes\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.trace_lengths' must be true or false, got 'yes'"));
  e = parse_error("- 1\n- 2\n");
  EXPECT_TRUE(contains(e, "w.yaml: the top level must be a map"));
  e = parse_error("num_requests: [1\n");
  EXPECT_TRUE(contains(e, "invalid YAML"));
}

TEST(WorkloadSpec, BadLengthDistributions) {
  auto e = parse_error("num_requests: 10\nlengths:\n  prompt: zipf\n");
  EXPECT_TRUE(contains(e,
                       "w.yaml:3: key 'lengths.prompt' must be N (fixed), [min, max] (uniform, "
                       "inclusive) or sharegpt, got 'zipf'"));
  e = parse_error("num_requests: 10\nlengths:\n  output: [64, 8]\n");
  EXPECT_TRUE(contains(e, "key 'lengths.output': uniform [64, 8] has min > max"));
  e = parse_error("num_requests: 10\nlengths:\n  output: [1, 2, 3]\n");
  EXPECT_TRUE(contains(e, "got a list of 3 items"));
  e = parse_error("num_requests: 10\nls:\n  prompt: 0\n");
  EXPECT_TRUE(contains(e, "key 'ls.prompt': token counts must be at least 1, got 0"));
  e = parse_error("num_requests: 10\nbe:\n  output: {min: 1}\n");
  EXPECT_TRUE(contains(e, "key 'be.output' must be"));
  e = parse_error("num_requests: 10\nlengths:\n  prompt: [a, 5]\n");
  EXPECT_TRUE(contains(e, "key 'lengths.prompt' must be an integer, got 'a'"));
}

TEST(WorkloadSpec, RateMustBePositive) {
  for (const char* rate : {"0", "-1", "0.0"}) {
    const auto e = parse_error(fmt::format("num_requests: 10\narrivals:\n  rate: {}\n", rate));
    EXPECT_TRUE(contains(
        e, fmt::format("w.yaml:3: key 'arrivals.rate' = {} must be greater than 0", rate)));
  }
  auto e = parse_error("num_requests: 10\narrivals:\n  process: gamma\n  burstiness: 0\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.burstiness' = 0 must be greater than 0"));
  e = parse_error("arrivals:\n  process: trace\n  trace: t.csv\n  rate_scale: 0\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.rate_scale' = 0 must be greater than 0"));
}

TEST(WorkloadSpec, InvariantsAndKeysThatDoNotApply) {
  auto e = parse_error("");
  EXPECT_TRUE(contains(e, "w.yaml: set 'num_requests' or 'duration_s'"));
  e = parse_error("num_requests: 10\narrivals:\n  trace: a.csv\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.trace' applies only to arrivals.process trace"));
  e = parse_error("num_requests: 10\narrivals:\n  burstiness: 0.5\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.burstiness' applies only to arrivals.process gamma"));
  e = parse_error("arrivals:\n  process: trace\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.trace' (the file) is missing"));
  e = parse_error("arrivals:\n  process: trace\n  trace: a.csv\n  rate: 3\n");
  EXPECT_TRUE(contains(e, "key 'arrivals.rate' does not apply to arrivals.process trace"));
  e = parse_error("arrivals:\n  process: trace\n  trace: a.csv\nlengths:\n  prompt: 5\n");
  EXPECT_TRUE(contains(e, "'lengths.prompt' do not apply while arrivals.trace_lengths is true"));
  e = parse_error("duration_s: 10\nbe_concurrency: 4\nls_fraction: 0.5\n");
  EXPECT_TRUE(contains(e, "key 'ls_fraction' does not apply with be_concurrency > 0"));
  e = parse_error("num_requests: 10\nlengths:\n  prompt: 2000\n");
  EXPECT_TRUE(
      contains(e, "LS prompts of at least 2000 tokens can never fit lengths.max_prompt (1024)"));
  e = parse_error("num_requests: 10\nlengths:\n  prompt: 1000\nbe:\n  output: [1100, 1200]\n");
  EXPECT_TRUE(contains(e,
                       "BE prompt + output of at least 2100 tokens can never fit lengths.max_total "
                       "(2048)"));
  e = parse_error("num_requests: 10\nlengths:\n  max_prompt: 4096\n");
  EXPECT_TRUE(contains(e, "lengths.max_prompt (4096) must be below lengths.max_total (2048)"));
  e = parse_error("num_requests: 10\nnum_requests: 20\n");
  EXPECT_TRUE(contains(e, "key 'num_requests' is given twice"));
  // Trace-only keys are fine with a trace; lengths apply when trace_lengths is false.
  const auto s = parse_workload_spec(
      "arrivals:\n  process: trace\n  trace: a.csv\n  trace_lengths: false\nlengths:\n  prompt: "
      "5\n",
      "w.yaml");
  EXPECT_EQ(s.lengths_prompt, LengthDist::fixed(5));
}

TEST(WorkloadSpec, LoadNamesTheFile) {
  const auto dir = qllm::test::temp_dir("workload-spec");
  const auto path = dir / "bad.yaml";
  std::ofstream(path) << "num_requests: 10\nlength:\n  prompt: 5\n";
  const auto e = error_of([&] { load_workload_spec(path); });
  EXPECT_TRUE(contains(e, path.string() + ":2: unknown workload key 'length'"));
  EXPECT_TRUE(contains(e, "did you mean 'lengths'"));
  const auto missing = error_of([&] { load_workload_spec(dir / "none.yaml"); });
  EXPECT_TRUE(contains(missing, "none.yaml: cannot open workload file"));
  std::filesystem::remove_all(dir);
}

TEST(WorkloadSpec, KeyTableMatchesDefaultsAndReadme) {
  const auto keys = workload_keys();
  ASSERT_FALSE(keys.empty());
  auto find = [&](std::string_view p) {
    for (const auto& k : keys)
      if (k.path == p) return k;
    ADD_FAILURE() << "no key " << p;
    return keys.front();
  };
  EXPECT_EQ(find("lengths.max_prompt").default_value, "1024");
  EXPECT_EQ(find("lengths.max_total").default_value, "2048");
  EXPECT_EQ(find("lengths.prompt").default_value, "sharegpt");
  EXPECT_EQ(find("ls.prompt").default_value, "null");
  EXPECT_EQ(find("arrivals.process").default_value, "\"poisson\"");
  EXPECT_EQ(find("ls_fraction").default_value, "0.2");
  for (const auto& k : keys) EXPECT_FALSE(k.doc.empty()) << k.path;
  const std::string readme = read(kSource / "engine/workload/README.md");
  EXPECT_NE(readme.find(workload_keys_markdown()), std::string::npos)
      << "engine/workload/README.md is out of step with the key table; paste:\n"
      << workload_keys_markdown();
}

TEST(WorkloadSpec, JsonHasEveryKey) {
  const auto s = parse_workload_spec("num_requests: 5\nlengths:\n  prompt: [2, 9]\n", "w.yaml");
  const nlohmann::json j = spec_to_json(s);
  EXPECT_EQ(j["num_requests"], 5);
  EXPECT_EQ(j["lengths"]["prompt"], nlohmann::json::array({2, 9}));
  EXPECT_EQ(j["lengths"]["output"], "sharegpt");
  EXPECT_TRUE(j["ls"]["prompt"].is_null());
  EXPECT_EQ(j["arrivals"]["process"], "poisson");
  EXPECT_EQ(j["source"], "w.yaml");
  size_t n = 0;
  for (const auto& [k, v] : j.items()) n += v.is_object() ? v.size() : (k == "source" ? 0 : 1);
  EXPECT_EQ(n, workload_keys().size());
}

TEST(WorkloadSpec, ShippedWorkloadsLoadAndGenerate) {
  const auto dir = kSource / "configs/workloads";
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
  for (const char* want : {"tiny-mixed", "qllm-paper", "closed-loop-be", "azure-conv-replay"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;

  const auto traces = qllm::test::shared_data_dir() / "traces";
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const auto path = dir / (name + ".yaml");
    const WorkloadSpec spec = load_workload_spec(path);
    EXPECT_EQ(spec.name, name);
    if (spec.arrivals_process == "trace" && !std::filesystem::exists(traces / spec.arrivals_trace))
      continue;  // the replay needs the shared traces
    GeneratorOptions opt;
    opt.traces_dir = traces;
    opt.spec_dir = dir;
    WorkloadGenerator gen(spec, opt);
    EXPECT_FALSE(gen.open_loop().empty());
    for (const auto& r : gen.open_loop()) {
      EXPECT_LE(r.prompt_tokens, spec.lengths_max_prompt);
      EXPECT_LE(r.prompt_tokens + r.max_tokens, spec.lengths_max_total);
    }
  }
  const auto tiny = load_workload_spec(dir / "tiny-mixed.yaml");
  const auto reqs = generate_open_loop(tiny, {});
  EXPECT_EQ(reqs.size(), 40u);
  const auto paper = load_workload_spec(dir / "qllm-paper.yaml");
  EXPECT_EQ(paper.num_requests, 1024);
  EXPECT_DOUBLE_EQ(paper.arrivals_rate, 10);
  EXPECT_DOUBLE_EQ(paper.ls_ttft_s, 3.0);
  EXPECT_EQ(paper.lengths_output, LengthDist::fixed(50));
}
