// The engine on a thread of its own, for the server: HTTP threads submit
// requests and cancellations and read each request's events from its
// RequestStream; the engine thread runs the dispatcher's step loop, turns its
// token events into stream events and records the metrics.
//
// Failure: if the dispatcher throws, the engine is marked failed (GET /health
// answers 503 from then on), every open stream gets an error event and
// new submissions are refused; the process stays up.
#pragma once

#include "engine/core/clock.h"
#include "engine/core/engine.h"
#include "engine/core/unit_backend.h"
#include "engine/core/request.h"
#include "engine/serve/metrics.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace qllm::serve {

struct StreamEvent {
  int32_t token = -1;  // -1: no token (the event only ends the request)
  Finish finish = Finish::None;
  std::string error;   // non-empty: the engine failed and the request ends
  bool end() const { return finish != Finish::None || !error.empty(); }
};

// One request's events, in order. The engine thread pushes; one reader pops.
class RequestStream {
 public:
  explicit RequestStream(uint64_t id) : id_(id) {}
  uint64_t id() const { return id_; }
  // Moves every pending event into `out`, waiting up to `timeout` for the
  // first. Returns false when none came.
  bool wait(std::vector<StreamEvent>& out, std::chrono::milliseconds timeout);
  void push(StreamEvent e);

 private:
  uint64_t id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> q_;
};

class AsyncEngine {
 public:
  // Runs an Engine over `backend` (any dispatcher's: engine/gpu/dispatcher.h
  // builds one), which must hold `limits`' slots and KV blocks and outlive
  // this object; only the engine thread calls it. Starts the engine thread.
  AsyncEngine(Backend& backend, const EngineLimits& limits, std::shared_ptr<Metrics> metrics);
  ~AsyncEngine();  // stop(0)

  // Queues a request (its id and arrival time are assigned here) and returns
  // its stream. Throws qllm::Error when the engine has stopped or failed; a
  // request the engine refuses (too long for the KV cache...) gets an error
  // event on its stream instead.
  std::shared_ptr<RequestStream> submit(Request r);

  // Cancels a request; its stream then ends with Finish::Cancelled (unless it
  // finished first). Unknown ids are ignored.
  void cancel(uint64_t id);

  // Stops admitting (submit throws), lets requests in flight finish for up to
  // `timeout_s`, cancels the rest, and joins the engine thread. Idempotent.
  void stop(double timeout_s);

  // For tests of the failure path: the engine thread throws `why` from its
  // next iteration, exactly as if the dispatcher had failed.
  void inject_failure(std::string why);

  bool healthy() const { return !failed_.load(); }
  std::string failure() const;
  EngineGauges gauges() const;
  int64_t in_flight() const { return in_flight_.load(); }  // submitted, not yet ended
  int64_t blocks_in_use() const;                           // KV blocks held right now
  double now() const { return clock_.now(); }

  // The engine's recent unit log (engine clock) and the timings of the last
  // kTraceRequests requests that ended (token times left out), copied on the
  // engine thread when its loop exits: empty until stop() or a failure ended
  // it. For the trace written at shutdown (profiling.trace_path).
  struct TraceSnapshot {
    std::vector<UnitRecord> units;
    std::vector<RequestTiming> timings;
  };
  static constexpr size_t kTraceRequests = 4096;
  TraceSnapshot trace_snapshot() const;

 private:
  struct Live {
    std::shared_ptr<RequestStream> stream;
    PriorityClass cls;
    double arrival_s = 0, last_token_s = -1;
  };
  void loop();
  void handle(const TokenEvent& ev);
  void fail_all(const std::string& why);
  void update_gauges();

  WallClock clock_;
  std::unique_ptr<Engine> engine_;     // touched by the engine thread only
  std::shared_ptr<Metrics> metrics_;
  std::map<uint64_t, Live> live_;      // engine thread only
  std::deque<RequestTiming> recent_;   // engine thread only: the last requests that ended

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Request> inbox_;
  std::vector<std::pair<uint64_t, std::shared_ptr<RequestStream>>> inbox_streams_;
  std::vector<uint64_t> cancels_;
  bool accepting_ = true, stopping_ = false;
  double deadline_s_ = 0;
  uint64_t next_id_ = 1;
  std::string failure_;
  std::string injected_failure_;
  EngineGauges gauges_;
  int64_t blocks_in_use_ = 0;
  TraceSnapshot snapshot_;

  std::atomic<bool> failed_{false};
  std::atomic<int64_t> in_flight_{0};
  std::thread thread_;
};

}  // namespace qllm::serve
