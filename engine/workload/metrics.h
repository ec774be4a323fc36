// Per-request measurements and the per-class summary of a run (BENCH.md):
// TTFT, TPOT, inter-token latency, end-to-end latency and queue time (mean,
// median, p90, p99), request and token throughput, SLO attainment, goodput,
// preemptions. The engine fills RequestRecords with its measured times; this
// file only does arithmetic on them.
#pragma once

#include "engine/workload/workload_spec.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace qllm::workload {

// A time that never came (e.g. no first token for a request that failed).
inline constexpr double kNoTime = std::numeric_limits<double>::quiet_NaN();
inline bool has_time(double t) { return t == t; }

// One request as measured, all times in seconds from the start of the run.
struct RequestRecord {
  int64_t id = 0;
  RequestClass cls = RequestClass::BE;
  double arrival_s = kNoTime;
  double first_scheduled_s = kNoTime;  // first work of this request on the device
  double first_token_s = kNoTime;
  std::vector<double> token_times_s;  // one per output token, the first included
  double finish_s = kNoTime;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  int64_t preemptions = 0;  // times its work was set aside for higher-priority work
  bool finished_ok = false;
  std::string error;  // why it did not finish, when !finished_ok
};

// Derived per-request quantities (NaN where they do not exist).
double ttft(const RequestRecord& r);        // first_token - arrival
double e2e(const RequestRecord& r);         // finish - arrival
double queue_time(const RequestRecord& r);  // first_scheduled - arrival
// (E2E - TTFT) / (output - 1); NaN with fewer than two output tokens.
double tpot(const RequestRecord& r);
// Whether a finished request meets every objective of `slo`. TPOT holds
// trivially with a single output token; a failed request meets none.
bool meets_slo(const RequestRecord& r, const Slo& slo);

// Linear-interpolation percentile (numpy's default) of sorted samples,
// p in [0, 100]; NaN for no samples.
double percentile_sorted(const std::vector<double>& sorted, double p);

struct LatencyStats {
  int64_t count = 0;
  double mean = kNoTime;
  double median = kNoTime;
  double p90 = kNoTime;
  double p99 = kNoTime;
  double min = kNoTime;
  double max = kNoTime;
};
LatencyStats latency_stats(std::vector<double> samples);

struct ClassSummary {
  std::string name;  // "LS", "BE", "all"
  int64_t requests = 0;
  int64_t completed = 0;  // finished_ok
  int64_t failed = 0;
  int64_t prompt_tokens = 0;                 // of completed requests
  int64_t output_tokens = 0;                 // of completed requests
  double request_throughput = 0;             // completed / duration, req/s
  double output_throughput = 0;              // output tokens / duration, tok/s
  double total_token_throughput = 0;         // (prompt + output) tokens / duration
  LatencyStats ttft, tpot, itl, e2e, queue;  // over completed requests
  Slo slo;                                   // the class's objectives (for "all": none)
  int64_t slo_met = 0;
  double slo_attainment = kNoTime;  // slo_met / requests
  double goodput = 0;               // slo_met / duration, req/s
  int64_t preemptions = 0;          // total over the class
  int64_t preempted_requests = 0;   // requests preempted at least once
  int64_t max_preemptions = 0;
};

struct RunSummary {
  double duration_s = 0;
  ClassSummary ls;
  ClassSummary be;
  ClassSummary all;
};

// Summarises records per class. `duration_s` <= 0 derives the run's duration
// from the records: latest finish (or arrival) minus earliest arrival.
RunSummary summarize(const std::vector<RequestRecord>& records, const Slo& ls_slo,
                     const Slo& be_slo, double duration_s = 0);

// The same with the spec's per-class SLOs.
RunSummary summarize(const std::vector<RequestRecord>& records, const WorkloadSpec& spec,
                     double duration_s = 0);

}  // namespace qllm::workload
