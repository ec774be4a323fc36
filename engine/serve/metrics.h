// Prometheus metrics of the server, under vLLM's names (so dashboards that
// scrape vLLM work unchanged) with a priority_class label ("LS" or "BE"):
//
//   vllm:num_requests_running, vllm:num_requests_waiting   gauges
//   vllm:kv_cache_usage_perc                               gauge, fraction 0..1
//   vllm:num_preemptions_total                             counter
//   vllm:prompt_tokens_total, vllm:generation_tokens_total counters
//   vllm:request_success_total{finished_reason}            counter
//   vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds,
//   vllm:e2e_request_latency_seconds, vllm:request_queue_time_seconds
//                                                          histograms
//
// Counters and histograms are recorded by the engine thread as requests
// progress; gauges are read from the engine when /metrics is rendered.
// Thread-safe.
#pragma once

#include "device_scheduler/policy.h"

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace qllm::serve {

using sched::PriorityClass;

// A Prometheus histogram: cumulative bucket counts, sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // ascending upper bounds (+Inf implied)
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  // per bucket, not cumulative; last = +Inf
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Gauges read from the engine at render time, per class.
struct EngineGauges {
  std::array<int64_t, 2> running{0, 0};
  std::array<int64_t, 2> waiting{0, 0};
  std::array<int64_t, 2> preemptions{0, 0};  // engine total so far
  double kv_usage = 0;                       // fraction of KV blocks in use
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);

  void add_prompt_tokens(PriorityClass c, int64_t n);
  void add_generation_tokens(PriorityClass c, int64_t n);
  void observe_ttft(PriorityClass c, double s);
  void observe_itl(PriorityClass c, double s);
  void observe_e2e(PriorityClass c, double s);
  void observe_queue_time(PriorityClass c, double s);
  // finished_reason: "stop", "length" or "abort".
  void add_finished(PriorityClass c, const std::string& finished_reason);

  // The text exposition format (version 0.0.4).
  std::string render(const EngineGauges& g) const;

 private:
  struct PerClass {
    int64_t prompt_tokens = 0, generation_tokens = 0;
    int64_t stop = 0, length = 0, abort = 0;
    Histogram ttft, itl, e2e, queue;
    PerClass();
  };
  template <class Field, class V>
  void update(PriorityClass c, Field PerClass::*field, V v);
  std::string model_;
  mutable std::mutex mu_;
  std::array<PerClass, 2> cls_;
};

}  // namespace qllm::serve
