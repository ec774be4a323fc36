// Workload generation: determinism, arrival statistics (Poisson, gamma),
// the LS fraction, length distributions and caps, ShareGPT from the table and
// from the fitted log-normal, and the closed-loop BE background. Every test
// uses a fixed seed, so the statistical checks cannot flake; their tolerances
// are still several standard errors wide so another seed would pass too.
#include "engine/common/error.h"
#include "engine/workload/generator.h"
#include "engine/workload/length_dist.h"
#include "engine/workload/metrics.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

using namespace qllm::workload;

namespace {

// Whether `text` contains `part`, printing both when not.
::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not found in:\n" << text;
}

WorkloadSpec spec(std::string_view yaml) { return parse_workload_spec(yaml, "t.yaml"); }

GeneratorOptions with_traces() {
  GeneratorOptions o;
  o.traces_dir = qllm::test::shared_data_dir() / "traces";
  return o;
}

struct GapStats {
  double rate;
  double cv;
};

GapStats gap_stats(const std::vector<WorkloadRequest>& rs) {
  std::vector<double> gaps;
  for (size_t i = 1; i < rs.size(); ++i) gaps.push_back(rs[i].arrival_s - rs[i - 1].arrival_s);
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / double(gaps.size());
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= double(gaps.size());
  return {1.0 / mean, std::sqrt(var) / mean};
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return percentile_sorted(v, 50);
}

}  // namespace

TEST(WorkloadGenerator, SameSeedSameRequests) {
  const auto s = spec(
      "seed: 42\nnum_requests: 500\narrivals:\n  process: gamma\n  rate: 5\n"
      "  burstiness: 0.5\nlengths:\n  prompt: sharegpt\n  output: [1, 100]\n"
      "  sharegpt_source: fitted\n");
  const auto a = generate_open_loop(s, {});
  const auto b = generate_open_loop(s, {});
  ASSERT_EQ(a.size(), 500u);
  EXPECT_EQ(a, b);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, int64_t(i));
    if (i > 0) {
      EXPECT_GE(a[i].arrival_s, a[i - 1].arrival_s);
    }
  }
  EXPECT_EQ(a.front().arrival_s, 0.0);
  auto other = s;
  other.seed = 43;
  EXPECT_NE(generate_open_loop(other, {}), a);
}

TEST(WorkloadGenerator, KnobsDrawFromSeparateStreams) {
  const auto s = spec("seed: 3\nnum_requests: 200\nlengths:\n  prompt: [1, 500]\n  output: 9\n");
  auto t = s;
  t.ls_fraction = 0.7;
  const auto a = generate_open_loop(s, {});
  const auto b = generate_open_loop(t, {});
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival_s, b[i].arrival_s);          // classes do not move arrivals
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);  // nor lengths (shared distribution)
  }
}

TEST(WorkloadGenerator, PoissonRateAndUnitCv) {
  const auto rs = generate_open_loop(
      spec("seed: 1\nnum_requests: 100000\narrivals:\n  rate: 10\nlengths:\n  prompt: 1\n"
           "  output: 1\n"),
      {});
  const auto g = gap_stats(rs);
  // Standard error of the rate and of the CV: about 0.3 % each.
  EXPECT_NEAR(g.rate, 10.0, 0.15);
  EXPECT_NEAR(g.cv, 1.0, 0.02);
}

TEST(WorkloadGenerator, GammaBurstiness) {
  for (double k : {0.25, 0.5, 4.0}) {
    SCOPED_TRACE(k);
    const auto rs = generate_open_loop(
        spec(fmt::format("seed: 2\nnum_requests: 100000\narrivals:\n  process: gamma\n"
                         "  rate: 8\n  burstiness: {}\nlengths:\n  prompt: 1\n  output: 1\n",
                         k)),
        {});
    const auto g = gap_stats(rs);
    EXPECT_NEAR(g.rate, 8.0, 8.0 * 0.03);
    EXPECT_NEAR(g.cv, 1.0 / std::sqrt(k), 0.05 / std::sqrt(k));
    if (k < 1) {
      EXPECT_GT(g.cv, 1.3);
    }
  }
  // burstiness 1 is Poisson.
  const auto rs = generate_open_loop(
      spec("seed: 2\nnum_requests: 50000\narrivals:\n  process: gamma\n  rate: 3\n"
           "  burstiness: 1\nlengths:\n  prompt: 1\n  output: 1\n"),
      {});
  EXPECT_NEAR(gap_stats(rs).cv, 1.0, 0.03);
}

TEST(WorkloadGenerator, DurationBoundsTheStream) {
  const auto rs = generate_open_loop(
      spec("seed: 5\nduration_s: 1000\narrivals:\n  rate: 4\nlengths:\n  prompt: 1\n  output: 1\n"),
      {});
  EXPECT_NEAR(double(rs.size()), 4000.0, 4 * std::sqrt(4000.0));
  for (const auto& r : rs) EXPECT_LT(r.arrival_s, 1000.0);
  // Both bounds: whichever comes first.
  const auto few = generate_open_loop(
      spec("seed: 5\nduration_s: 1000\nnum_requests: 10\nlengths:\n  prompt: 1\n  output: 1\n"),
      {});
  EXPECT_EQ(few.size(), 10u);
}

TEST(WorkloadGenerator, LsFraction) {
  for (double f : {0.0, 0.2, 0.5, 1.0}) {
    SCOPED_TRACE(f);
    const auto rs = generate_open_loop(
        spec(fmt::format("seed: 9\nnum_requests: 40000\nls_fraction: {}\nlengths:\n  prompt: 1\n"
                         "  output: 1\n",
                         f)),
        {});
    const auto ls = std::count_if(rs.begin(), rs.end(),
                                  [](const auto& r) { return r.cls == RequestClass::LS; });
    EXPECT_NEAR(double(ls) / double(rs.size()), f, 0.01);  // standard error <= 0.0025
  }
}

TEST(WorkloadGenerator, FixedUniformAndPerClassLengths) {
  const auto rs = generate_open_loop(
      spec("seed: 4\nnum_requests: 5000\nlengths:\n  prompt: [10, 20]\n  output: 7\n"
           "ls:\n  prompt: 3\n  output: [1, 2]\n"),
      {});
  std::set<int64_t> be_prompts, ls_outputs;
  for (const auto& r : rs) {
    if (r.cls == RequestClass::LS) {
      EXPECT_EQ(r.prompt_tokens, 3);
      ls_outputs.insert(r.max_tokens);
    } else {
      EXPECT_EQ(r.max_tokens, 7);
      be_prompts.insert(r.prompt_tokens);
    }
  }
  EXPECT_EQ(be_prompts.size(), 11u);  // every value of [10, 20], inclusive
  EXPECT_EQ(*be_prompts.begin(), 10);
  EXPECT_EQ(*be_prompts.rbegin(), 20);
  EXPECT_EQ(ls_outputs, (std::set<int64_t>{1, 2}));
}

TEST(WorkloadGenerator, CapsHoldForEveryDistribution) {
  // Uniform ranges beyond the caps are redrawn, never clamped.
  const auto u = generate_open_loop(
      spec("seed: 6\nnum_requests: 5000\nlengths:\n  prompt: [1, 400]\n  output: [1, 400]\n"
           "  max_prompt: 300\n  max_total: 500\n"),
      {});
  int64_t max_prompt = 0, max_total = 0;
  for (const auto& r : u) {
    ASSERT_LE(r.prompt_tokens, 300);
    ASSERT_LE(r.prompt_tokens + r.max_tokens, 500);
    max_prompt = std::max(max_prompt, r.prompt_tokens);
    max_total = std::max(max_total, r.prompt_tokens + r.max_tokens);
  }
  EXPECT_EQ(max_prompt, 300);
  EXPECT_GE(max_total, 495);
  // ShareGPT, fitted, with the default caps and with tight ones.
  for (const char* caps : {"", "  max_prompt: 128\n  max_total: 160\n"}) {
    const auto s =
        spec(fmt::format("seed: 6\nnum_requests: 5000\nlengths:\n"
                         "  sharegpt_source: fitted\n{}",
                         caps));
    for (const auto& r : generate_open_loop(s, {})) {
      ASSERT_GE(r.prompt_tokens, 1);
      ASSERT_GE(r.max_tokens, 1);
      ASSERT_LE(r.prompt_tokens, s.lengths_max_prompt);
      ASSERT_LE(r.prompt_tokens + r.max_tokens, s.lengths_max_total);
    }
  }
}

TEST(WorkloadGenerator, FittedShareGptMatchesTheTableUnderTheCaps) {
  // The file's statistics within the default caps (36 % of its rows): prompt
  // median 297, output median 399 (see length_dist.cpp).
  const auto s = spec("seed: 11\nnum_requests: 20000\nlengths:\n  sharegpt_source: fitted\n");
  std::vector<double> prompts, outputs;
  for (const auto& r : generate_open_loop(s, {})) {
    prompts.push_back(double(r.prompt_tokens));
    outputs.push_back(double(r.max_tokens));
  }
  EXPECT_NEAR(median_of(prompts), 350, 25);
  EXPECT_NEAR(median_of(outputs), 403, 25);
  Rng rng(1);
  std::vector<double> raw_p, raw_o;
  for (int i = 0; i < 20000; ++i) {
    const auto p = sample_sharegpt_fitted(rng);
    raw_p.push_back(double(p.prompt));
    raw_o.push_back(double(p.output));
    ASSERT_LE(p.output, 1024);
  }
  EXPECT_NEAR(median_of(raw_p), std::exp(kShareGptFit.mu_prompt), 50);
  EXPECT_NEAR(median_of(raw_o), 415, 15);  // the file's median output
}

TEST(WorkloadGenerator, ShareGptFromTheTable) {
  QLLM_REQUIRE_SHARED_DATA(std::string("traces/") + kShareGptCsv);
  const auto rows = load_sharegpt_csv(qllm::test::shared_data_dir() / "traces" / kShareGptCsv);
  ASSERT_EQ(rows.size(), 30731u);
  EXPECT_EQ(rows.front(), (LengthPair{74, 918}));
  std::set<std::pair<int64_t, int64_t>> in_file;
  std::vector<double> capped_p;
  for (const auto& r : rows) {
    in_file.insert({r.prompt, r.output});
    if (r.prompt <= 1024 && r.prompt + r.output <= 2048) capped_p.push_back(double(r.prompt));
  }
  const auto s = spec("seed: 12\nnum_requests: 20000\nlengths:\n  sharegpt_source: file\n");
  WorkloadGenerator gen(s, with_traces());
  EXPECT_TRUE(contains(gen.sharegpt_source(), "file "));
  std::vector<double> prompts;
  for (const auto& r : gen.open_loop()) {
    ASSERT_TRUE(in_file.count({r.prompt_tokens, r.max_tokens})) << "not a row of the table";
    ASSERT_LE(r.prompt_tokens, 1024);
    ASSERT_LE(r.prompt_tokens + r.max_tokens, 2048);
    prompts.push_back(double(r.prompt_tokens));
  }
  EXPECT_NEAR(median_of(prompts), median_of(capped_p), 15);
  // auto takes the file when present, and fitted when not.
  auto a = s;
  a.lengths_sharegpt_source = "auto";
  EXPECT_EQ(WorkloadGenerator(a, with_traces()).open_loop(), gen.open_loop());
  EXPECT_EQ(WorkloadGenerator(a, {}).sharegpt_source(), "fitted log-normal");
}

TEST(WorkloadGenerator, ShareGptFileRequiredButMissing) {
  const auto s = spec("num_requests: 3\nlengths:\n  sharegpt_source: file\n");
  GeneratorOptions none;
  none.traces_dir = qllm::test::temp_dir("workload-no-traces");
  try {
    WorkloadGenerator gen(s, none);
    ADD_FAILURE() << "expected an error";
  } catch (const qllm::Error& e) {
    EXPECT_TRUE(contains(e.what(),
                         "t.yaml: lengths.sharegpt_source is file but the "
                         "ShareGPT length table"));
  }
  std::filesystem::remove_all(none.traces_dir);
}

TEST(WorkloadGenerator, ClosedLoopBackground) {
  const auto s = spec(
      "seed: 8\nduration_s: 30\nbe_concurrency: 4\narrivals:\n  rate: 2\n"
      "lengths:\n  prompt: [5, 50]\n  output: [5, 50]\nls:\n  output: 3\n");
  WorkloadGenerator gen(s, {});
  ASSERT_TRUE(gen.closed_loop());
  const auto& open = gen.open_loop();
  ASSERT_FALSE(open.empty());
  for (const auto& r : open) {
    EXPECT_EQ(r.cls, RequestClass::LS);  // the open stream is all LS
    EXPECT_EQ(r.max_tokens, 3);
    EXPECT_FALSE(r.closed_loop);
  }
  EXPECT_DOUBLE_EQ(gen.closed_loop_end_s(), 30.0);
  const auto start = gen.closed_loop_start();
  ASSERT_EQ(start.size(), 4u);
  for (size_t i = 0; i < start.size(); ++i) {
    EXPECT_EQ(start[i].id, int64_t(open.size() + i));
    EXPECT_EQ(start[i].cls, RequestClass::BE);
    EXPECT_TRUE(start[i].closed_loop);
    EXPECT_EQ(start[i].arrival_s, 0.0);
  }
  const auto next = gen.next_closed_loop(12.5);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->arrival_s, 12.5);
  EXPECT_EQ(next->id, int64_t(open.size() + 4));
  EXPECT_FALSE(gen.next_closed_loop(30.0).has_value());

  // The k-th closed-loop request has the same lengths whatever the timing.
  WorkloadGenerator again(s, {});
  const auto start2 = again.closed_loop_start();
  const auto next2 = again.next_closed_loop(0.25);
  ASSERT_TRUE(next2.has_value());
  EXPECT_EQ(start2, start);
  EXPECT_EQ(next2->prompt_tokens, next->prompt_tokens);
  EXPECT_EQ(next2->max_tokens, next->max_tokens);

  // Open loop: no background.
  WorkloadGenerator open_only(spec("num_requests: 3\nlengths:\n  prompt: 1\n  output: 1\n"), {});
  EXPECT_FALSE(open_only.closed_loop());
  EXPECT_TRUE(open_only.closed_loop_start().empty());
  EXPECT_FALSE(open_only.next_closed_loop(0).has_value());
}

TEST(WorkloadGenerator, RngIsPlatformIndependent) {
  // Pinned values: a change here changes every workload; do it on purpose.
  Rng r(0);
  EXPECT_EQ(r.next(), 4768932952251265552ull);
  Rng s(0, 1);
  EXPECT_EQ(s.next(), 5168670072111841749ull);
  Rng v(123);
  EXPECT_EQ(v.uniform_int(0, 999), 416);
  EXPECT_EQ(v.uniform_int(0, 999), 119);
  EXPECT_EQ(v.uniform_int(0, 999), 978);
  Rng u(123);
  for (int i = 0; i < 1000; ++i) {
    const double x = u.uniform();
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
    const int64_t k = u.uniform_int(-3, 3);
    ASSERT_GE(k, -3);
    ASSERT_LE(k, 3);
  }
}
