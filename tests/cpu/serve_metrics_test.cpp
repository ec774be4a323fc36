// The Prometheus exposition: vLLM's names, a priority_class label, cumulative
// histogram buckets that agree with _count and _sum.
#include "engine/serve/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

using namespace qllm::serve;

namespace {

// name{labels} -> value, from the text format.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> m;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    const std::string v = line.substr(sp + 1);
    m[line.substr(0, sp)] = v == "+Inf" ? 1e300 : std::stod(v);
  }
  return m;
}

}  // namespace

TEST(Histogram, BucketsAreUpperInclusive) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.1);
  h.observe(0.5);
  h.observe(7);
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{2, 1, 1}));
  EXPECT_EQ(h.count(), 4u);
  EXPECT_DOUBLE_EQ(h.sum(), 7.65);
}

TEST(Metrics, RendersVllmNamesPerClass) {
  Metrics m("tiny \"x\"");
  m.add_prompt_tokens(PriorityClass::LS, 12);
  m.add_prompt_tokens(PriorityClass::BE, 100);
  m.add_generation_tokens(PriorityClass::BE, 7);
  m.observe_ttft(PriorityClass::LS, 0.003);
  m.observe_ttft(PriorityClass::LS, 0.2);
  m.observe_itl(PriorityClass::BE, 0.002);
  m.observe_e2e(PriorityClass::BE, 1.5);
  m.observe_queue_time(PriorityClass::BE, 0.01);
  m.add_finished(PriorityClass::BE, "length");
  m.add_finished(PriorityClass::LS, "abort");
  EngineGauges g;
  g.running = {1, 3};
  g.waiting = {0, 5};
  g.preemptions = {0, 9};
  g.kv_usage = 0.25;
  const std::string text = m.render(g);
  const auto s = samples(text);
  const std::string ls = "model_name=\"tiny \\\"x\\\"\",priority_class=\"LS\"";
  const std::string be = "model_name=\"tiny \\\"x\\\"\",priority_class=\"BE\"";
  EXPECT_EQ(s.at("vllm:num_requests_running{" + ls + "}"), 1);
  EXPECT_EQ(s.at("vllm:num_requests_running{" + be + "}"), 3);
  EXPECT_EQ(s.at("vllm:num_requests_waiting{" + be + "}"), 5);
  EXPECT_EQ(s.at("vllm:num_preemptions_total{" + be + "}"), 9);
  EXPECT_EQ(s.at("vllm:kv_cache_usage_perc{model_name=\"tiny \\\"x\\\"\"}"), 0.25);
  EXPECT_EQ(s.at("vllm:prompt_tokens_total{" + ls + "}"), 12);
  EXPECT_EQ(s.at("vllm:prompt_tokens_total{" + be + "}"), 100);
  EXPECT_EQ(s.at("vllm:generation_tokens_total{" + be + "}"), 7);
  EXPECT_EQ(s.at("vllm:request_success_total{" + be + ",finished_reason=\"length\"}"), 1);
  EXPECT_EQ(s.at("vllm:request_success_total{" + ls + ",finished_reason=\"abort\"}"), 1);
  EXPECT_EQ(s.at("vllm:time_to_first_token_seconds_count{" + ls + "}"), 2);
  EXPECT_DOUBLE_EQ(s.at("vllm:time_to_first_token_seconds_sum{" + ls + "}"), 0.203);
  EXPECT_EQ(s.at("vllm:time_to_first_token_seconds_bucket{" + ls + ",le=\"0.0025\"}"), 0);
  EXPECT_EQ(s.at("vllm:time_to_first_token_seconds_bucket{" + ls + ",le=\"0.005\"}"), 1);
  EXPECT_EQ(s.at("vllm:time_to_first_token_seconds_bucket{" + ls + ",le=\"0.25\"}"), 2);
  EXPECT_EQ(s.at("vllm:time_to_first_token_seconds_bucket{" + ls + ",le=\"+Inf\"}"), 2);
  EXPECT_EQ(s.at("vllm:inter_token_latency_seconds_count{" + be + "}"), 1);
  EXPECT_EQ(s.at("vllm:e2e_request_latency_seconds_count{" + be + "}"), 1);
  EXPECT_EQ(s.at("vllm:request_queue_time_seconds_count{" + be + "}"), 1);
  // Every family is typed once.
  for (const char* fam : {"vllm:num_requests_running gauge", "vllm:kv_cache_usage_perc gauge",
                          "vllm:num_preemptions_total counter", "vllm:time_to_first_token_seconds histogram",
                          "vllm:inter_token_latency_seconds histogram",
                          "vllm:e2e_request_latency_seconds histogram",
                          "vllm:request_queue_time_seconds histogram"}) {
    const std::string t = std::string("# TYPE ") + fam + "\n";
    const auto first = text.find(t);
    ASSERT_NE(first, std::string::npos) << fam;
    EXPECT_EQ(text.find(t, first + 1), std::string::npos) << fam;
  }
}

TEST(Metrics, CumulativeBucketsNeverDecrease) {
  Metrics m("m");
  for (int i = 0; i < 200; ++i) m.observe_itl(PriorityClass::LS, 1e-4 * i * i);
  const auto text = m.render({});
  std::istringstream in(text);
  double prev = -1;
  int buckets = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("vllm:inter_token_latency_seconds_bucket{model_name=\"m\",priority_class=\"LS\"", 0) != 0)
      continue;
    const double v = std::stod(line.substr(line.rfind(' ') + 1));
    EXPECT_GE(v, prev) << line;
    prev = v;
    ++buckets;
  }
  EXPECT_GT(buckets, 10);
  EXPECT_EQ(prev, 200);
}
