#include "engine/bench/runner.h"

#include "engine/common/error.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <queue>
#include <system_error>
#include <thread>

namespace qllm::bench {
namespace {

using workload::WorkloadRequest;

struct LaterArrival {
  bool operator()(const WorkloadRequest& a, const WorkloadRequest& b) const {
    return a.arrival_s != b.arrival_s ? a.arrival_s > b.arrival_s : a.id > b.id;
  }
};

class Runner {
 public:
  Runner(const workload::WorkloadSpec& spec, const workload::GeneratorOptions& gen_opts,
         const BenchOptions& options)
      : gen_(spec, gen_opts), options_(options), settings_(options.request) {
    settings_.seed = uint64_t(spec.seed);
  }

  BenchRun run() {
    std::unique_lock lk(m_);
    for (const auto& w : gen_.open_loop()) pending_.push(w);
    if (gen_.closed_loop())
      for (const auto& w : gen_.closed_loop_start()) pending_.push(w);
    t0_ = BenchClock::now();
    for (;;) {
      if (pending_.empty()) {
        if (in_flight_ == 0) break;  // nothing due and nothing that could add more
        dispatch_cv_.wait(lk);
        continue;
      }
      if (options_.max_concurrency > 0 && in_flight_ >= options_.max_concurrency) {
        dispatch_cv_.wait(lk);
        continue;
      }
      const auto due = t0_ + std::chrono::duration_cast<BenchClock::duration>(
                                 std::chrono::duration<double>(pending_.top().arrival_s));
      if (BenchClock::now() < due) {
        dispatch_cv_.wait_until(lk, due);  // or earlier: a closed-loop request came in
        continue;
      }
      const WorkloadRequest w = pending_.top();
      pending_.pop();
      ++in_flight_;
      out_.max_in_flight = std::max(out_.max_in_flight, in_flight_);
      if (w.closed_loop) {
        ++closed_in_flight_;
        out_.max_closed_loop_in_flight = std::max(out_.max_closed_loop_in_flight, closed_in_flight_);
      }
      ready_.push_back(w);
      if (int64_t(ready_.size()) > idle_) {
        try {
          workers_.emplace_back([this] { worker(); });
        } catch (const std::system_error&) {
          if (workers_.empty()) throw;  // otherwise the workers there are take it in turn
        }
      }
      work_cv_.notify_one();
    }
    out_.duration_s = std::chrono::duration<double>(BenchClock::now() - t0_).count();
    stop_ = true;
    work_cv_.notify_all();
    lk.unlock();
    for (auto& t : workers_) t.join();

    std::vector<size_t> order(out_.records.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return out_.records[a].id < out_.records[b].id; });
    BenchRun sorted;
    sorted.duration_s = out_.duration_s;
    sorted.max_in_flight = out_.max_in_flight;
    sorted.max_closed_loop_in_flight = out_.max_closed_loop_in_flight;
    for (size_t i : order) {
      sorted.records.push_back(std::move(out_.records[i]));
      sorted.traces.push_back(std::move(out_.traces[i]));
    }
    return sorted;
  }

 private:
  void worker() {
    std::unique_lock lk(m_);
    for (;;) {
      ++idle_;
      work_cv_.wait(lk, [&] { return stop_ || !ready_.empty(); });
      --idle_;
      if (ready_.empty()) return;  // stopped with nothing left
      const WorkloadRequest w = ready_.front();
      ready_.pop_front();
      lk.unlock();

      RequestTrace trace;
      workload::RequestRecord rec;
      try {
        rec = send_request(options_.url, w, settings_, t0_, &trace);
      } catch (const std::exception& e) {  // one request's trouble never stops the run
        rec = {};
        rec.id = w.id;
        rec.cls = w.cls;
        rec.arrival_s = w.arrival_s;
        rec.prompt_tokens = w.prompt_tokens;
        rec.error = e.what();
        trace.id = w.id;
        trace.max_tokens = w.max_tokens;
      }
      const double now_s = std::chrono::duration<double>(BenchClock::now() - t0_).count();

      lk.lock();
      --in_flight_;
      if (w.closed_loop) --closed_in_flight_;
      ++done_;
      if (!rec.finished_ok) ++failed_;
      out_.records.push_back(std::move(rec));
      out_.traces.push_back(std::move(trace));
      if (w.closed_loop)
        if (auto next = gen_.next_closed_loop(now_s)) {
          next->arrival_s = std::max(next->arrival_s, now_s);
          pending_.push(*next);
        }
      if (options_.on_progress) options_.on_progress({now_s, done_, failed_, in_flight_});
      dispatch_cv_.notify_one();
    }
  }

  workload::WorkloadGenerator gen_;
  const BenchOptions& options_;
  RequestSettings settings_;

  std::mutex m_;
  std::condition_variable dispatch_cv_;  // the dispatcher: a request finished or came in
  std::condition_variable work_cv_;      // the workers: a request is ready
  std::priority_queue<WorkloadRequest, std::vector<WorkloadRequest>, LaterArrival> pending_;
  std::deque<WorkloadRequest> ready_;
  std::vector<std::thread> workers_;
  int64_t idle_ = 0;
  int64_t in_flight_ = 0;
  int64_t closed_in_flight_ = 0;
  int64_t done_ = 0;
  int64_t failed_ = 0;
  bool stop_ = false;
  BenchClock::time_point t0_;
  BenchRun out_;
};

}  // namespace

BenchRun run_bench(const workload::WorkloadSpec& spec, const workload::GeneratorOptions& gen,
                   const BenchOptions& options) {
  Runner r(spec, gen, options);
  return r.run();
}

void override_request_rate(workload::WorkloadSpec& spec, double rate) {
  if (spec.arrivals_process == "trace")
    fail("--request-rate: workload '{}' replays a trace (arrivals.process trace); scale it with "
         "arrivals.rate_scale in the workload file",
         spec.name);
  if (!(rate > 0) || !std::isfinite(rate))
    fail("--request-rate must be a positive number of requests/s, got {}", rate);
  spec.arrivals_rate = rate;
  spec.keys_set.insert("arrivals.rate");
}

nlohmann::json traces_to_json(const std::vector<RequestTrace>& traces) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& t : traces)
    a.push_back({{"id", t.id},
                 {"sent_s", workload::has_time(t.sent_s) ? nlohmann::json(t.sent_s) : nlohmann::json()},
                 {"http_status", t.http_status},
                 {"chunks", t.chunks},
                 {"max_tokens", t.max_tokens},
                 {"finish_reason", t.finish_reason}});
  return a;
}

}  // namespace qllm::bench
