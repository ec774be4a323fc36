#include "engine/serve/metrics.h"

#include "engine/common/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace qllm::serve {
namespace {

// vLLM's bucket bounds, with finer ones below its smallest so that the
// millisecond latencies of small models are not all in one bucket.
std::vector<double> ttft_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
          0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}
std::vector<double> itl_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
          0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> request_buckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
          20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

constexpr const char* kClassName[2] = {"LS", "BE"};

// Prometheus label values escape backslash, double quote and newline.
std::string escape_label(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\') o += "\\\\";
    else if (c == '"') o += "\\\"";
    else if (c == '\n') o += "\\n";
    else o += c;
  }
  return o;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return fmt::format("{}", v);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  QLLM_CHECK(std::is_sorted(bounds_.begin(), bounds_.end()));
}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  const auto i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];  // le is inclusive: v == bound lands in that bucket
  sum_ += v;
  ++count_;
}

Metrics::PerClass::PerClass()
    : ttft(ttft_buckets()), itl(itl_buckets()), e2e(request_buckets()), queue(request_buckets()) {}

Metrics::Metrics(std::string model_name) : model_(escape_label(model_name)) {}

template <class Field, class V>
void Metrics::update(PriorityClass c, Field PerClass::*field, V v) {
  std::lock_guard lk(mu_);
  auto& f = cls_[int(c)].*field;
  if constexpr (std::is_same_v<Field, Histogram>) f.observe(double(v));
  else f += v;
}

void Metrics::add_prompt_tokens(PriorityClass c, int64_t n) { update(c, &PerClass::prompt_tokens, n); }
void Metrics::add_generation_tokens(PriorityClass c, int64_t n) { update(c, &PerClass::generation_tokens, n); }
void Metrics::observe_ttft(PriorityClass c, double s) { update(c, &PerClass::ttft, s); }
void Metrics::observe_itl(PriorityClass c, double s) { update(c, &PerClass::itl, s); }
void Metrics::observe_e2e(PriorityClass c, double s) { update(c, &PerClass::e2e, s); }
void Metrics::observe_queue_time(PriorityClass c, double s) { update(c, &PerClass::queue, s); }
void Metrics::add_finished(PriorityClass c, const std::string& reason) {
  std::lock_guard lk(mu_);
  auto& k = cls_[int(c)];
  if (reason == "stop") ++k.stop;
  else if (reason == "length") ++k.length;
  else ++k.abort;
}

std::string Metrics::render(const EngineGauges& g) const {
  std::lock_guard lk(mu_);
  std::string o;
  auto labels = [&](int c, const std::string& extra = {}) {
    return fmt::format("{{model_name=\"{}\",priority_class=\"{}\"{}}}", model_, kClassName[c], extra);
  };
  auto scalar = [&](const char* name, const char* type, const char* help, auto value_of) {
    o += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (int c = 0; c < 2; ++c) o += fmt::format("{}{} {}\n", name, labels(c), number(double(value_of(c))));
  };
  scalar("vllm:num_requests_running", "gauge", "Requests in a pass or with computed tokens.",
         [&](int c) { return g.running[size_t(c)]; });
  scalar("vllm:num_requests_waiting", "gauge", "Requests admitted and not yet started.",
         [&](int c) { return g.waiting[size_t(c)]; });
  o += "# HELP vllm:kv_cache_usage_perc KV-cache usage, 1 = full.\n# TYPE vllm:kv_cache_usage_perc gauge\n";
  o += fmt::format("vllm:kv_cache_usage_perc{{model_name=\"{}\"}} {}\n", model_, number(g.kv_usage));
  scalar("vllm:num_preemptions_total", "counter", "Passes set aside for higher-priority work.",
         [&](int c) { return g.preemptions[size_t(c)]; });
  scalar("vllm:prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
         [&](int c) { return cls_[size_t(c)].prompt_tokens; });
  scalar("vllm:generation_tokens_total", "counter", "Generated tokens.",
         [&](int c) { return cls_[size_t(c)].generation_tokens; });
  o += "# HELP vllm:request_success_total Finished requests by reason.\n"
       "# TYPE vllm:request_success_total counter\n";
  for (int c = 0; c < 2; ++c) {
    const auto& k = cls_[size_t(c)];
    o += fmt::format("vllm:request_success_total{} {}\n", labels(c, ",finished_reason=\"stop\""), k.stop);
    o += fmt::format("vllm:request_success_total{} {}\n", labels(c, ",finished_reason=\"length\""), k.length);
    o += fmt::format("vllm:request_success_total{} {}\n", labels(c, ",finished_reason=\"abort\""), k.abort);
  }
  auto hist = [&](const char* name, const char* help, Histogram PerClass::*h) {
    o += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    for (int c = 0; c < 2; ++c) {
      const Histogram& H = cls_[size_t(c)].*h;
      uint64_t cum = 0;
      for (size_t i = 0; i <= H.bounds().size(); ++i) {
        cum += H.counts()[i];
        const std::string le = i < H.bounds().size() ? number(H.bounds()[i]) : "+Inf";
        o += fmt::format("{}_bucket{} {}\n", name, labels(c, fmt::format(",le=\"{}\"", le)), cum);
      }
      o += fmt::format("{}_sum{} {}\n", name, labels(c), number(H.sum()));
      o += fmt::format("{}_count{} {}\n", name, labels(c), H.count());
    }
  };
  hist("vllm:time_to_first_token_seconds", "Time to first token (arrival to first token out).",
       &PerClass::ttft);
  hist("vllm:inter_token_latency_seconds", "Time between consecutive output tokens.", &PerClass::itl);
  hist("vllm:e2e_request_latency_seconds", "Arrival to last token.", &PerClass::e2e);
  hist("vllm:request_queue_time_seconds", "Arrival to the request's first work on the device.",
       &PerClass::queue);
  return o;
}

}  // namespace qllm::serve
