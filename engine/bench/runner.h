// `qllm bench`: a workload (engine/workload) replayed against a running
// OpenAI-compatible server over HTTP, every request timed on the client.
//
// Open loop: a dispatcher sends each request of WorkloadGenerator::open_loop()
// at its arrival time after the start of the run, whatever the server is
// doing; each request streams on a worker thread of its own (the pool grows
// to the peak number in flight). Closed loop (be_concurrency N): N BE
// requests go out at the start and each finished one is replaced at once by
// next_closed_loop(now), until closed_loop_end_s(). --max-concurrency caps
// the requests in flight: a request due while the cap is reached waits on
// the client, and that wait counts in its latency (its arrival stays the
// scheduled time; RequestTrace::sent_s says when it actually left).
#pragma once

#include "engine/bench/client.h"
#include "engine/workload/generator.h"
#include "engine/workload/metrics.h"
#include "engine/workload/workload_spec.h"

#include <cstdint>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

namespace qllm::bench {

struct BenchProgress {
  double elapsed_s = 0;
  int64_t done = 0;  // finished, failed ones included
  int64_t failed = 0;
  int64_t in_flight = 0;
};

struct BenchOptions {
  ServerUrl url;
  RequestSettings request;      // request.seed is taken from the spec
  int64_t max_concurrency = 0;  // 0: no cap
  // Called after every finished request, serialised (under the run's lock:
  // keep it short).
  std::function<void(const BenchProgress&)> on_progress;
};

struct BenchRun {
  std::vector<workload::RequestRecord> records;  // sorted by id
  std::vector<RequestTrace> traces;              // in the order of records
  double duration_s = 0;                         // start of the run to the last finish
  int64_t max_in_flight = 0;                     // most requests in flight at once
  int64_t max_closed_loop_in_flight = 0;         // most closed-loop BE requests in flight
};

// Runs the whole workload; returns when every request has finished or failed.
// Throws qllm::Error only for what stops it before it starts (a trace file
// the generator cannot read).
BenchRun run_bench(const workload::WorkloadSpec& spec, const workload::GeneratorOptions& gen,
                   const BenchOptions& options);

// --request-rate: sets arrivals.rate of a poisson or gamma workload. Throws
// qllm::Error for a trace (scale it with arrivals.rate_scale) and for a rate
// that is not positive.
void override_request_rate(workload::WorkloadSpec& spec, double rate);

// The traces as a JSON array of {"id", "sent_s", "http_status", "chunks",
// "max_tokens", "finish_reason"} (sent_s null when never sent).
nlohmann::json traces_to_json(const std::vector<RequestTrace>& traces);

}  // namespace qllm::bench
