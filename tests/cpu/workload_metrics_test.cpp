// Metrics on hand-computed records: percentiles, TTFT/TPOT/ITL/E2E/queue,
// TPOT with a single output token, SLO attainment, goodput, throughput,
// preemptions; the printed table; JSON round trip of the records.
#include "engine/common/error.h"
#include "engine/workload/metrics.h"
#include "engine/workload/report.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

using namespace qllm::workload;

namespace {

// Whether `text` contains `part`, printing both when not.
::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not found in:\n" << text;
}

RequestRecord rec(int64_t id, RequestClass cls, double arrival, double sched, double first,
                  std::vector<double> tokens, double finish, int64_t preemptions = 0) {
  RequestRecord r;
  r.id = id;
  r.cls = cls;
  r.arrival_s = arrival;
  r.first_scheduled_s = sched;
  r.first_token_s = first;
  r.output_tokens = int64_t(tokens.size());
  r.token_times_s = std::move(tokens);
  r.finish_s = finish;
  r.prompt_tokens = 10 * (id + 1);
  r.preemptions = preemptions;
  r.finished_ok = true;
  return r;
}

// Three LS and two BE requests; every expected number below is worked out by hand.
std::vector<RequestRecord> sample_records() {
  constexpr auto LS = RequestClass::LS;
  constexpr auto BE = RequestClass::BE;
  std::vector<RequestRecord> rs;
  // TTFT 0.5, TPOT (1.0 - 0.5) / 2 = 0.25, E2E 1.0, queue 0.1, ITL 0.2 and 0.3.
  rs.push_back(rec(0, LS, 0.0, 0.1, 0.5, {0.5, 0.7, 1.0}, 1.0));
  // One output token: TTFT 2.5, no TPOT, E2E 2.5, queue 0.5; preempted twice.
  rs.push_back(rec(1, LS, 1.0, 1.5, 3.5, {3.5}, 3.5, 2));
  // TTFT 4.0, TPOT 0.5, E2E 4.5, queue 0.2, ITL 0.5; preempted once.
  rs.push_back(rec(2, LS, 2.0, 2.2, 6.0, {6.0, 6.5}, 6.5, 1));
  // BE: TTFT 1.0, TPOT 0.5, E2E 2.5, queue 0.1, ITL 0.5 x 3.
  rs.push_back(rec(3, BE, 0.5, 0.6, 1.5, {1.5, 2.0, 2.5, 3.0}, 3.0));
  // BE that failed before any work.
  RequestRecord f;
  f.id = 4;
  f.cls = BE;
  f.arrival_s = 3.0;
  f.prompt_tokens = 50;
  f.error = "KV cache exhausted";
  rs.push_back(f);
  return rs;
}

bool same_time(double a, double b) { return (!has_time(a) && !has_time(b)) || a == b; }

void expect_same(const RequestRecord& a, const RequestRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.cls, b.cls);
  EXPECT_TRUE(same_time(a.arrival_s, b.arrival_s));
  EXPECT_TRUE(same_time(a.first_scheduled_s, b.first_scheduled_s));
  EXPECT_TRUE(same_time(a.first_token_s, b.first_token_s));
  EXPECT_TRUE(same_time(a.finish_s, b.finish_s));
  EXPECT_EQ(a.token_times_s, b.token_times_s);
  EXPECT_EQ(a.prompt_tokens, b.prompt_tokens);
  EXPECT_EQ(a.output_tokens, b.output_tokens);
  EXPECT_EQ(a.preemptions, b.preemptions);
  EXPECT_EQ(a.finished_ok, b.finished_ok);
  EXPECT_EQ(a.error, b.error);
}

}  // namespace

TEST(WorkloadMetrics, LinearInterpolationPercentiles) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 90), 3.7);   // position 2.7
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 99), 3.97);  // position 2.97
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 100), 4);
  EXPECT_DOUBLE_EQ(percentile_sorted({7}, 99), 7);
  EXPECT_FALSE(has_time(percentile_sorted({}, 50)));
  const auto s = latency_stats({4, 1, 3, 2, kNoTime});  // unsorted, a missing sample dropped
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_DOUBLE_EQ(s.p90, 3.7);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_FALSE(has_time(latency_stats({}).mean));
}

TEST(WorkloadMetrics, PerRequestQuantities) {
  const auto rs = sample_records();
  EXPECT_DOUBLE_EQ(ttft(rs[0]), 0.5);
  EXPECT_DOUBLE_EQ(tpot(rs[0]), 0.25);
  EXPECT_DOUBLE_EQ(e2e(rs[0]), 1.0);
  EXPECT_DOUBLE_EQ(queue_time(rs[0]), 0.1);
  EXPECT_FALSE(has_time(tpot(rs[1])));  // a single output token has no TPOT
  EXPECT_DOUBLE_EQ(tpot(rs[2]), 0.5);
  // SLOs: TPOT holds trivially with one token; a failed request meets none.
  EXPECT_TRUE(meets_slo(rs[1], Slo{0, 0.001, 0}));
  EXPECT_TRUE(meets_slo(rs[0], Slo{0.5, 0.25, 1.0}));  // bounds are inclusive
  EXPECT_FALSE(meets_slo(rs[0], Slo{0, 0.2, 0}));
  EXPECT_FALSE(meets_slo(rs[2], Slo{0, 0, 4.0}));
  EXPECT_FALSE(meets_slo(rs[4], Slo{}));
}

TEST(WorkloadMetrics, SummaryPerClass) {
  const auto s = summarize(sample_records(), Slo{3.0, 0, 0}, Slo{});
  EXPECT_DOUBLE_EQ(s.duration_s, 6.5);  // first arrival 0 to last finish 6.5

  const ClassSummary& ls = s.ls;
  EXPECT_EQ(ls.requests, 3);
  EXPECT_EQ(ls.completed, 3);
  EXPECT_EQ(ls.failed, 0);
  EXPECT_EQ(ls.ttft.count, 3);  // 0.5, 2.5, 4.0
  EXPECT_DOUBLE_EQ(ls.ttft.mean, 7.0 / 3.0);
  EXPECT_DOUBLE_EQ(ls.ttft.median, 2.5);
  EXPECT_DOUBLE_EQ(ls.ttft.p90, 2.5 + 0.8 * 1.5);
  EXPECT_DOUBLE_EQ(ls.ttft.p99, 2.5 + 0.98 * 1.5);
  EXPECT_EQ(ls.tpot.count, 2);  // 0.25, 0.5 (the one-token request has none)
  EXPECT_DOUBLE_EQ(ls.tpot.mean, 0.375);
  EXPECT_DOUBLE_EQ(ls.tpot.p90, 0.25 + 0.9 * 0.25);
  EXPECT_EQ(ls.itl.count, 3);  // 0.2, 0.3, 0.5
  EXPECT_NEAR(ls.itl.median, 0.3, 1e-12);
  EXPECT_NEAR(ls.itl.mean, 1.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(ls.e2e.median, 2.5);  // 1.0, 2.5, 4.5
  EXPECT_DOUBLE_EQ(ls.e2e.max, 4.5);
  EXPECT_NEAR(ls.queue.mean, (0.1 + 0.5 + 0.2) / 3, 1e-12);
  EXPECT_EQ(ls.output_tokens, 6);
  EXPECT_EQ(ls.prompt_tokens, 10 + 20 + 30);
  EXPECT_DOUBLE_EQ(ls.request_throughput, 3 / 6.5);
  EXPECT_DOUBLE_EQ(ls.output_throughput, 6 / 6.5);
  EXPECT_DOUBLE_EQ(ls.total_token_throughput, 66 / 6.5);
  // TTFT <= 3 s: requests 0 and 1 meet it, request 2 (4.0 s) does not.
  EXPECT_EQ(ls.slo_met, 2);
  EXPECT_DOUBLE_EQ(ls.slo_attainment, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(ls.goodput, 2 / 6.5);
  EXPECT_EQ(ls.preemptions, 3);
  EXPECT_EQ(ls.preempted_requests, 2);
  EXPECT_EQ(ls.max_preemptions, 2);

  const ClassSummary& be = s.be;
  EXPECT_EQ(be.requests, 2);
  EXPECT_EQ(be.completed, 1);
  EXPECT_EQ(be.failed, 1);
  EXPECT_EQ(be.ttft.count, 1);
  EXPECT_DOUBLE_EQ(be.ttft.p99, 1.0);
  EXPECT_DOUBLE_EQ(be.tpot.mean, 0.5);
  EXPECT_EQ(be.itl.count, 3);
  // No BE objectives: every finished request counts, the failed one does not.
  EXPECT_EQ(be.slo_met, 1);
  EXPECT_DOUBLE_EQ(be.slo_attainment, 0.5);
  EXPECT_DOUBLE_EQ(be.goodput, 1 / 6.5);

  EXPECT_EQ(s.all.requests, 5);
  EXPECT_EQ(s.all.completed, 4);
  EXPECT_EQ(s.all.slo_met, 3);  // each request judged by its own class's SLO
  EXPECT_EQ(s.all.output_tokens, 10);
  EXPECT_EQ(s.all.ttft.count, 4);

  // A TPOT objective: the one-token request meets it, request 2 (0.5 s) does not.
  const auto t = summarize(sample_records(), Slo{0, 0.3, 0}, Slo{}, 10.0);
  EXPECT_EQ(t.ls.slo_met, 2);
  EXPECT_DOUBLE_EQ(t.duration_s, 10.0);  // given, not derived
  EXPECT_DOUBLE_EQ(t.ls.goodput, 0.2);
  // Per-class SLOs from a spec.
  const auto spec = parse_workload_spec("num_requests: 1\nls:\n  e2e_s: 2\n", "w.yaml");
  EXPECT_EQ(summarize(sample_records(), spec).ls.slo_met, 1);
  // Nothing measured: no division by zero.
  const auto empty = summarize({}, Slo{}, Slo{});
  EXPECT_EQ(empty.duration_s, 0);
  EXPECT_EQ(empty.ls.request_throughput, 0);
  EXPECT_FALSE(has_time(empty.ls.slo_attainment));
}

TEST(WorkloadMetrics, TableSideBySide) {
  const auto a = summarize(sample_records(), Slo{3.0, 0, 0}, Slo{});
  auto faster = sample_records();
  for (auto& r : faster) r.preemptions = 0;
  const auto b = summarize(faster, Slo{3.0, 0, 0}, Slo{});
  const std::string t = format_summary_table({{"fcfs-iteration", a}, {"priority-expert", b}});
  EXPECT_TRUE(contains(t, "Serving Benchmark Result"));
  EXPECT_TRUE(contains(t, "fcfs-iteration"));
  EXPECT_TRUE(contains(t, "priority-expert"));
  EXPECT_TRUE(contains(t, "LS: latency-sensitive"));
  EXPECT_TRUE(contains(t, "BE: best-effort"));
  EXPECT_TRUE(contains(t, "All requests"));
  // Median LS TTFT 2.5 s, in ms, once per run on one line.
  const auto line_start = t.find("Median TTFT (ms):");
  ASSERT_NE(line_start, std::string::npos);
  const std::string line = t.substr(line_start, t.find('\n', line_start) - line_start);
  const auto first = line.find("2500.00");
  ASSERT_NE(first, std::string::npos) << line;
  EXPECT_NE(line.find("2500.00", first + 1), std::string::npos) << line;
  EXPECT_TRUE(contains(t, "TTFT<=3s"));
  EXPECT_TRUE(contains(t, "66.7"));  // LS SLO attainment, %
  EXPECT_TRUE(contains(t, "3 / 3"));
  // Every line is as wide as the rules.
  size_t width = t.find('\n');
  for (size_t pos = 0; pos < t.size();) {
    const size_t end = t.find('\n', pos);
    EXPECT_EQ(end - pos, width) << t.substr(pos, end - pos);
    pos = end + 1;
  }
  // A class no run has is left out.
  const auto records = sample_records();
  const std::vector<RequestRecord> only_ls(records.begin(), records.begin() + 3);
  const std::string t2 = format_summary_table({{"run", summarize(only_ls, Slo{}, Slo{})}});
  EXPECT_EQ(t2.find("BE: best-effort"), std::string::npos);
  EXPECT_EQ(t2.find("All requests"), std::string::npos);
}

TEST(WorkloadMetrics, JsonRoundTrip) {
  const auto rs = sample_records();
  for (const auto& r : rs) {
    const auto text = record_to_json(r).dump();
    expect_same(record_from_json(nlohmann::json::parse(text), "t"), r);
  }
  const auto j = record_to_json(rs[4]);
  EXPECT_TRUE(j["first_token_s"].is_null());  // never came: null, not NaN
  EXPECT_EQ(j["cls"], "BE");
  EXPECT_EQ(j["error"], "KV cache exhausted");

  const auto spec = parse_workload_spec("name: t\nnum_requests: 5\nls:\n  ttft_s: 3\n", "t.yaml");
  const auto summary = summarize(rs, spec);
  const auto run = run_to_json("priority-expert", spec, rs, summary, {{"device", "cpu"}});
  EXPECT_EQ(run["format"], "qllm-run/1");
  EXPECT_EQ(run["spec"]["ls"]["ttft_s"], 3.0);
  EXPECT_EQ(run["summary"]["LS"]["slo_met"], 2);
  EXPECT_DOUBLE_EQ(run["summary"]["LS"]["ttft_s"]["median"].get<double>(), 2.5);
  EXPECT_TRUE(run["summary"]["BE"]["queue_s"]["count"] == 1);
  EXPECT_EQ(run["extra"]["device"], "cpu");
  const auto dir = qllm::test::temp_dir("workload-json");
  write_json_file(dir / "run.json", run);
  const auto back = read_run_records(dir / "run.json");
  ASSERT_EQ(back.size(), rs.size());
  for (size_t i = 0; i < rs.size(); ++i) expect_same(back[i], rs[i]);

  auto bad = record_to_json(rs[0]);
  bad["cls"] = "XX";
  try {
    record_from_json(bad, "run.json: records[0]");
    ADD_FAILURE() << "expected an error";
  } catch (const qllm::Error& e) {
    EXPECT_TRUE(contains(e.what(), "run.json: records[0]: record field 'cls'"));
  }
  bad = record_to_json(rs[0]);
  bad.erase("finish_s");
  try {
    record_from_json(bad, "r");
    ADD_FAILURE() << "expected an error";
  } catch (const qllm::Error& e) {
    EXPECT_TRUE(contains(e.what(), "record field 'finish_s' is missing"));
  }
  std::ofstream(dir / "junk.json") << "{\"records\": 3}";
  EXPECT_THROW(read_run_records(dir / "junk.json"), qllm::Error);
  std::filesystem::remove_all(dir);
}
