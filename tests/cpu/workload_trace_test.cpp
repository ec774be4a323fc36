// Trace replay: the real Azure and Mooncake files (skipped when the shared
// traces are absent), rate scaling, row limits, jitter, and malformed files.
#include "engine/common/error.h"
#include "engine/workload/generator.h"
#include "engine/workload/trace.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include "tests/test_errors.h"

#include <fstream>

using namespace qllm::workload;

namespace {

// Whether `text` contains `part`, printing both when not.
::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not found in:\n" << text;
}

const std::filesystem::path kTraces = qllm::test::shared_data_dir() / "traces";
constexpr const char* kAzureConv = "azure_llm_2023/AzureLLMInferenceTrace_conv.csv";
constexpr const char* kAzureCode = "azure_llm_2023/AzureLLMInferenceTrace_code.csv";
constexpr const char* kMooncakeConv = "mooncake_fast25/conversation_trace.jsonl";
constexpr const char* kMooncakeSynth = "mooncake_fast25/synthetic_trace.jsonl";

// Mean arrival rate as SOURCES.md computes it: (N - 1) / (last - first).
double mean_rate(const std::vector<double>& t) {
  return double(t.size() - 1) / (t.back() - t.front());
}

std::vector<double> times_of(const std::vector<TraceRow>& rows) {
  std::vector<double> t;
  for (const auto& r : rows) t.push_back(r.time_s);
  return t;
}

std::vector<double> times_of(const std::vector<WorkloadRequest>& rs) {
  std::vector<double> t;
  for (const auto& r : rs) t.push_back(r.arrival_s);
  return t;
}

WorkloadSpec replay(const std::string& file, const std::string& extra = "") {
  return parse_workload_spec(
      fmt::format("seed: 0\narrivals:\n  process: trace\n  trace: {}\n{}", file, extra),
      "replay.yaml");
}

GeneratorOptions opts() {
  GeneratorOptions o;
  o.traces_dir = kTraces;
  return o;
}

using qllm::test::error_of;

}  // namespace

TEST(WorkloadTrace, AzureTimestamps) {
  const auto a = parse_azure_timestamp("2023-11-16 18:15:46.6805900", "x");
  const auto b = parse_azure_timestamp("2023-11-16 18:15:50.9951690", "x");
  EXPECT_EQ(a.seconds, 1700158546);  // 2023-11-16T18:15:46Z
  EXPECT_NEAR(a.fraction, 0.68059, 1e-12);
  EXPECT_NEAR(double(b.seconds - a.seconds) + (b.fraction - a.fraction), 4.314579, 1e-9);
  EXPECT_EQ(parse_azure_timestamp("2024-03-01 00:00:00", "x").seconds -
                parse_azure_timestamp("2024-02-28 00:00:00", "x").seconds,
            2 * 86400);  // a leap year
  const auto e = error_of([] { parse_azure_timestamp("2023-11-16T18:15:46", "f.csv:9"); });
  EXPECT_TRUE(contains(e, "f.csv:9: column 'TIMESTAMP' must look like"));
}

TEST(WorkloadTrace, AzureConversationFile) {
  QLLM_REQUIRE_SHARED_DATA(std::string("traces/") + kAzureConv);
  const auto rows = read_trace(kTraces / kAzureConv, TraceFormat::Azure);
  ASSERT_EQ(rows.size(), 19366u);  // SOURCES.md
  EXPECT_EQ(rows[0].time_s, 0.0);
  EXPECT_EQ(rows[0].prompt, 374);
  EXPECT_EQ(rows[0].output, 44);
  EXPECT_NEAR(rows[1].time_s, 4.314579, 1e-9);
  EXPECT_NEAR(rows.back().time_s, 3501.7, 0.05);
  EXPECT_NEAR(mean_rate(times_of(rows)), 5.53, 0.005);

  // Replayed at twice the rate, with the trace's lengths under wide caps.
  const auto s = replay(kAzureConv,
                        "  rate_scale: 2\nlengths:\n  max_prompt: 16000\n"
                        "  max_total: 20000\nls_fraction: 0.25\n");
  const auto rs = generate_open_loop(s, opts());
  ASSERT_EQ(rs.size(), rows.size());
  EXPECT_NEAR(mean_rate(times_of(rs)), 2 * 5.53, 0.01);
  int64_t ls = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    ASSERT_DOUBLE_EQ(rs[i].arrival_s, rows[i].time_s / 2);
    ASSERT_EQ(rs[i].prompt_tokens, rows[i].prompt);
    ASSERT_EQ(rs[i].max_tokens, rows[i].output);
    ls += rs[i].cls == RequestClass::LS;
  }
  EXPECT_NEAR(double(ls) / double(rs.size()), 0.25, 0.015);
}

TEST(WorkloadTrace, RowLimitCountAndDuration) {
  QLLM_REQUIRE_SHARED_DATA(std::string("traces/") + kAzureCode);
  const auto rows = read_trace(kTraces / kAzureCode, TraceFormat::Azure);
  ASSERT_EQ(rows.size(), 8819u);
  EXPECT_NEAR(mean_rate(times_of(rows)), 2.57, 0.005);
  EXPECT_EQ(read_trace(kTraces / kAzureCode, TraceFormat::Azure, 100).size(), 100u);
  EXPECT_EQ(generate_open_loop(replay(kAzureCode, "  max_rows: 300\n"), opts()).size(), 300u);
  EXPECT_EQ(generate_open_loop(replay(kAzureCode, "num_requests: 50\n"), opts()).size(), 50u);
  const auto timed =
      generate_open_loop(replay(kAzureCode, "  rate_scale: 4\nduration_s: 60\n"), opts());
  ASSERT_FALSE(timed.empty());
  size_t expected = 0;
  for (const auto& r : rows) expected += r.time_s / 4 < 60 ? 1 : 0;
  EXPECT_EQ(timed.size(), expected);
  // Default caps: lengths are clamped (prompt <= 1024, total <= 2048).
  for (const auto& r : timed) {
    EXPECT_LE(r.prompt_tokens, 1024);
    EXPECT_LE(r.prompt_tokens + r.max_tokens, 2048);
  }
  // Lengths drawn from a distribution instead of the trace's.
  const auto drawn =
      generate_open_loop(replay(kAzureCode,
                                "  trace_lengths: false\n  max_rows: 20\nlengths:\n  prompt: 7\n"
                                "  output: 3\n"),
                         opts());
  for (const auto& r : drawn) EXPECT_EQ(r.prompt_tokens + r.max_tokens, 10);
}

TEST(WorkloadTrace, MooncakeFiles) {
  QLLM_REQUIRE_SHARED_DATA(std::string("traces/") + kMooncakeConv);
  const auto conv = read_trace(kTraces / kMooncakeConv, TraceFormat::Mooncake);
  ASSERT_EQ(conv.size(), 12031u);
  EXPECT_EQ(conv[0].prompt, 6758);
  EXPECT_EQ(conv[0].output, 500);
  EXPECT_NEAR(conv.back().time_s, 3536.999, 1e-6);
  EXPECT_NEAR(mean_rate(times_of(conv)), 3.40, 0.005);
  const auto synth = read_trace(kTraces / kMooncakeSynth, TraceFormat::Mooncake);
  EXPECT_EQ(synth.size(), 3993u);
  EXPECT_NEAR(mean_rate(times_of(synth)), 3.91, 0.005);

  // Format by extension, rate halved, 3 s jitter spreads the buckets.
  const auto s = replay(kMooncakeConv,
                        "  rate_scale: 0.5\n  jitter_s: 3\nlengths:\n"
                        "  max_prompt: 200000\n  max_total: 300000\n");
  const auto rs = generate_open_loop(s, opts());
  ASSERT_EQ(rs.size(), conv.size());
  size_t ties = 0;
  for (size_t i = 1; i < rs.size(); ++i) {
    ASSERT_GE(rs[i].arrival_s, rs[i - 1].arrival_s);
    ties += rs[i].arrival_s == rs[i - 1].arrival_s;
  }
  EXPECT_EQ(ties, 0u);  // 90 % of the raw gaps are 0
  EXPECT_NEAR(mean_rate(times_of(rs)), 3.40 / 2, 0.01);
  EXPECT_EQ(rs, generate_open_loop(s, opts()));
}

TEST(WorkloadTrace, MalformedFiles) {
  const auto dir = qllm::test::temp_dir("workload-trace");
  auto write = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  };
  auto e = error_of([&] { read_trace(write("h.csv", "time,a,b\n"), TraceFormat::Azure); });
  EXPECT_TRUE(contains(e, "h.csv:1: not an Azure LLM inference trace"));
  e = error_of([&] {
    read_trace(write("n.csv",
                     "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.68,12,3\n2023-11-16 18:15:47.00,x,3\n"),
               TraceFormat::Azure);
  });
  EXPECT_TRUE(
      contains(e, "n.csv:3: column 'ContextTokens' must be a non-negative integer, got 'x'"));
  e = error_of([&] {
    read_trace(write("b.csv",
                     "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.68,12,3\n2023-11-16 18:15:45.00,1,3\n"),
               TraceFormat::Azure);
  });
  EXPECT_TRUE(contains(e, "b.csv:3: TIMESTAMP goes back in time"));
  e = error_of([&] {
    read_trace(write("f.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1\n"),
               TraceFormat::Azure);
  });
  EXPECT_TRUE(contains(e, "f.csv:2: expected 3 fields, got 2"));
  e = error_of([&] {
    read_trace(write("m.jsonl",
                     "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n"
                     "{\"timestamp\": 10, \"input_length\": 5}\n"),
               TraceFormat::Mooncake);
  });
  EXPECT_TRUE(contains(e, "m.jsonl:2: missing field 'output_length'"));
  e = error_of([&] { read_trace(write("j.jsonl", "{\"timestamp\": \n"), TraceFormat::Mooncake); });
  EXPECT_TRUE(contains(e, "j.jsonl:1: invalid JSON"));
  e = error_of([&] {
    read_trace(write("t.jsonl", "{\"timestamp\": 0, \"input_length\": -5, \"output_length\": 1}\n"),
               TraceFormat::Mooncake);
  });
  EXPECT_TRUE(contains(e, "t.jsonl:1: field 'input_length' must be a non-negative integer"));
  e = error_of([&] { read_trace(write("e.jsonl", ""), TraceFormat::Mooncake); });
  EXPECT_TRUE(contains(e, "e.jsonl: the trace has no rows"));
  e = error_of([&] { trace_format_for(dir / "x.txt", "auto"); });
  EXPECT_TRUE(contains(e, "set arrivals.trace_format"));

  // A trace next to the workload file, relative to its folder; and a missing one.
  write("local.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5,12,3\n"
        "2023-11-16 18:15:47.0,20,4\n");
  GeneratorOptions o;
  o.spec_dir = dir;
  const auto rs = generate_open_loop(replay("local.csv"), o);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_NEAR(rs[1].arrival_s, 0.5, 1e-9);
  EXPECT_EQ(rs[1].prompt_tokens, 20);
  e = error_of([&] { generate_open_loop(replay("absent.csv"), o); });
  EXPECT_TRUE(contains(e, "replay.yaml: key 'arrivals.trace': trace file 'absent.csv' not found"));
  std::filesystem::remove_all(dir);
}

TEST(WorkloadTrace, FindsTheTracesFolder) {
  QLLM_REQUIRE_SHARED_DATA("traces");
  if (std::getenv("QLLM_TRACES_DIR")) GTEST_SKIP() << "QLLM_TRACES_DIR overrides the search";
  // shared/data/traces beside the checkout is found from a folder inside it.
  const auto found = find_traces_dir(std::filesystem::path(QLLM_SOURCE_DIR) / "configs");
  if (found.empty()) GTEST_SKIP() << "the shared data is not beside the checkout";
  EXPECT_TRUE(std::filesystem::exists(found / kAzureConv) ||
              std::filesystem::exists(found / kMooncakeConv));
}
