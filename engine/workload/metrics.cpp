#include "engine/workload/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qllm::workload {

double ttft(const RequestRecord& r) { return r.first_token_s - r.arrival_s; }
double e2e(const RequestRecord& r) { return r.finish_s - r.arrival_s; }
double queue_time(const RequestRecord& r) { return r.first_scheduled_s - r.arrival_s; }

double tpot(const RequestRecord& r) {
  if (r.output_tokens < 2) return kNoTime;
  return (e2e(r) - ttft(r)) / double(r.output_tokens - 1);
}

bool meets_slo(const RequestRecord& r, const Slo& slo) {
  if (!r.finished_ok) return false;
  // A missing time fails the comparison (NaN <= x is false).
  if (slo.ttft_s > 0 && !(ttft(r) <= slo.ttft_s)) return false;
  if (slo.tpot_s > 0 && r.output_tokens >= 2 && !(tpot(r) <= slo.tpot_s)) return false;
  if (slo.e2e_s > 0 && !(e2e(r) <= slo.e2e_s)) return false;
  return true;
}

double percentile_sorted(const std::vector<double>& v, double p) {
  if (v.empty()) return kNoTime;
  const double pos = std::clamp(p, 0.0, 100.0) / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

LatencyStats latency_stats(std::vector<double> samples) {
  samples.erase(
      std::remove_if(samples.begin(), samples.end(), [](double x) { return !has_time(x); }),
      samples.end());
  LatencyStats s;
  s.count = int64_t(samples.size());
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / double(samples.size());
  s.median = percentile_sorted(samples, 50);
  s.p90 = percentile_sorted(samples, 90);
  s.p99 = percentile_sorted(samples, 99);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

namespace {

ClassSummary summarize_class(const std::vector<const RequestRecord*>& rs, std::string name,
                             const Slo* slo_ls, const Slo* slo_be, const Slo& own_slo,
                             double duration_s) {
  ClassSummary c;
  c.name = std::move(name);
  c.slo = own_slo;
  std::vector<double> ttfts, tpots, itls, e2es, queues;
  for (const RequestRecord* r : rs) {
    ++c.requests;
    c.preemptions += r->preemptions;
    if (r->preemptions > 0) ++c.preempted_requests;
    c.max_preemptions = std::max(c.max_preemptions, r->preemptions);
    const Slo& slo = r->cls == RequestClass::LS ? *slo_ls : *slo_be;
    if (meets_slo(*r, slo)) ++c.slo_met;
    if (!r->finished_ok) {
      ++c.failed;
      continue;
    }
    ++c.completed;
    c.prompt_tokens += r->prompt_tokens;
    c.output_tokens += r->output_tokens;
    ttfts.push_back(ttft(*r));
    tpots.push_back(tpot(*r));
    e2es.push_back(e2e(*r));
    queues.push_back(queue_time(*r));
    for (size_t i = 1; i < r->token_times_s.size(); ++i)
      itls.push_back(r->token_times_s[i] - r->token_times_s[i - 1]);
  }
  c.ttft = latency_stats(std::move(ttfts));
  c.tpot = latency_stats(std::move(tpots));
  c.itl = latency_stats(std::move(itls));
  c.e2e = latency_stats(std::move(e2es));
  c.queue = latency_stats(std::move(queues));
  if (c.requests > 0) c.slo_attainment = double(c.slo_met) / double(c.requests);
  if (duration_s > 0) {
    c.request_throughput = double(c.completed) / duration_s;
    c.output_throughput = double(c.output_tokens) / duration_s;
    c.total_token_throughput = double(c.prompt_tokens + c.output_tokens) / duration_s;
    c.goodput = double(c.slo_met) / duration_s;
  }
  return c;
}

}  // namespace

RunSummary summarize(const std::vector<RequestRecord>& records, const Slo& ls_slo,
                     const Slo& be_slo, double duration_s) {
  if (duration_s <= 0) {
    double first = kNoTime, last = kNoTime;
    for (const auto& r : records) {
      if (has_time(r.arrival_s) && !(first <= r.arrival_s)) first = r.arrival_s;
      const double end = has_time(r.finish_s) ? r.finish_s : r.arrival_s;
      if (has_time(end) && !(last >= end)) last = end;
    }
    duration_s = has_time(first) && has_time(last) ? last - first : 0.0;
  }
  std::vector<const RequestRecord*> ls, be, all;
  for (const auto& r : records) {
    (r.cls == RequestClass::LS ? ls : be).push_back(&r);
    all.push_back(&r);
  }
  RunSummary s;
  s.duration_s = duration_s;
  s.ls = summarize_class(ls, "LS", &ls_slo, &be_slo, ls_slo, duration_s);
  s.be = summarize_class(be, "BE", &ls_slo, &be_slo, be_slo, duration_s);
  s.all = summarize_class(all, "all", &ls_slo, &be_slo, Slo{}, duration_s);
  return s;
}

RunSummary summarize(const std::vector<RequestRecord>& records, const WorkloadSpec& spec,
                     double duration_s) {
  return summarize(records, spec.slo(RequestClass::LS), spec.slo(RequestClass::BE), duration_s);
}

}  // namespace qllm::workload
