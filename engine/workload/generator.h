// Turns a WorkloadSpec into requests: arrival times, priority class and
// lengths. Deterministic: the same spec (seed included) and the same files give
// the same requests, on every platform (engine/workload/rng.h).
//
// Open loop: every request is known up front, sorted by arrival time. Closed
// loop (be_concurrency = N > 0): the open stream is all LS; BE requests are a
// background of N always outstanding. The runner takes the first N from
// closed_loop_start() and asks next_closed_loop(now) each time a BE request
// finishes; the k-th closed-loop request has the same id and lengths whatever
// the timing, so runs under different policies stay comparable.
#pragma once

#include "engine/workload/length_dist.h"
#include "engine/workload/workload_spec.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace qllm::workload {

struct WorkloadRequest {
  int64_t id = 0;        // 0.. in order of arrival (open loop), then closed-loop ids
  double arrival_s = 0;  // seconds after the start of the run
  RequestClass cls = RequestClass::BE;
  int64_t prompt_tokens = 0;
  int64_t max_tokens = 0;    // output tokens to generate
  bool closed_loop = false;  // a closed-loop BE request: issue the next on completion
  bool operator==(const WorkloadRequest&) const = default;
};

struct GeneratorOptions {
  // The traces folder (arrivals.trace, the ShareGPT table); empty: none.
  std::filesystem::path traces_dir;
  // The workload file's folder, also searched for arrivals.trace.
  std::filesystem::path spec_dir;
};

// GeneratorOptions for a workload file: its folder, and find_traces_dir() from it.
GeneratorOptions options_for_spec_file(const std::filesystem::path& spec_file);

class WorkloadGenerator {
 public:
  // Reads the trace and the ShareGPT table as the spec asks; throws
  // qllm::Error on a missing or malformed file.
  WorkloadGenerator(const WorkloadSpec& spec, const GeneratorOptions& options);

  // The open-loop requests, sorted by arrival time.
  const std::vector<WorkloadRequest>& open_loop() const { return open_; }

  bool closed_loop() const { return spec_.closed_loop(); }

  // Closed loop: the first be_concurrency BE requests, all arriving at 0.
  std::vector<WorkloadRequest> closed_loop_start();

  // Closed loop: the next BE request, arriving at `now_s` (when one finished);
  // none once now_s reaches closed_loop_end_s().
  std::optional<WorkloadRequest> next_closed_loop(double now_s);

  // Closed-loop BE requests are issued until this time: duration_s when set,
  // else the last open-loop arrival.
  double closed_loop_end_s() const { return closed_end_s_; }

  // Where ShareGPT draws came from: "file PATH" or "fitted log-normal"
  // (empty when no distribution is sharegpt).
  const std::string& sharegpt_source() const { return sharegpt_source_; }

 private:
  std::vector<double> arrival_times();
  WorkloadRequest make_closed_loop(double now_s);

  WorkloadSpec spec_;
  GeneratorOptions options_;
  std::vector<LengthPair> sharegpt_rows_;
  std::string sharegpt_source_;
  std::vector<WorkloadRequest> open_;
  double closed_end_s_ = 0;
  int64_t closed_issued_ = 0;
  Rng closed_rng_;
};

// The open-loop requests of a spec (the whole workload when be_concurrency is 0).
std::vector<WorkloadRequest> generate_open_loop(const WorkloadSpec& spec,
                                                const GeneratorOptions& options);

}  // namespace qllm::workload
