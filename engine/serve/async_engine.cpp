#include "engine/serve/async_engine.h"

#include "engine/common/error.h"

#include <fmt/format.h>

namespace qllm::serve {

bool RequestStream::wait(std::vector<StreamEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return !q_.empty(); })) return false;
  while (!q_.empty()) {
    out.push_back(std::move(q_.front()));
    q_.pop_front();
  }
  return true;
}

void RequestStream::push(StreamEvent e) {
  {
    std::lock_guard lk(mu_);
    q_.push_back(std::move(e));
  }
  cv_.notify_one();
}

AsyncEngine::AsyncEngine(Backend& backend, const EngineLimits& limits, std::shared_ptr<Metrics> metrics)
    : metrics_(std::move(metrics)) {
  engine_ = std::make_unique<Engine>(backend, limits, clock_);
  engine_->set_unit_log_limit(1 << 16);  // a server runs for days: keep the recent units only
  update_gauges();
  thread_ = std::thread([this] {
    loop();
    TraceSnapshot snap{engine_->unit_log(), {recent_.begin(), recent_.end()}};
    std::lock_guard lk(mu_);
    snapshot_ = std::move(snap);
  });
}

AsyncEngine::~AsyncEngine() { stop(0); }

std::shared_ptr<RequestStream> AsyncEngine::submit(Request r) {
  std::lock_guard lk(mu_);
  if (failed_.load()) fail("the engine has failed: {}", failure_);
  if (!accepting_) fail("the engine is shutting down");
  r.id = next_id_++;
  r.arrival_s = clock_.now();
  auto stream = std::make_shared<RequestStream>(r.id);
  inbox_streams_.emplace_back(r.id, stream);
  inbox_.push_back(std::move(r));
  ++in_flight_;
  cv_.notify_one();
  return stream;
}

void AsyncEngine::cancel(uint64_t id) {
  std::lock_guard lk(mu_);
  cancels_.push_back(id);
  cv_.notify_one();
}

void AsyncEngine::stop(double timeout_s) {
  {
    std::lock_guard lk(mu_);
    accepting_ = false;
    if (!stopping_) {
      stopping_ = true;
      deadline_s_ = clock_.now() + std::max(0.0, timeout_s);
    }
    cv_.notify_one();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void AsyncEngine::inject_failure(std::string why) {
  std::lock_guard lk(mu_);
  injected_failure_ = std::move(why);
  cv_.notify_one();
}

std::string AsyncEngine::failure() const {
  std::lock_guard lk(mu_);
  return failure_;
}

EngineGauges AsyncEngine::gauges() const {
  std::lock_guard lk(mu_);
  return gauges_;
}

AsyncEngine::TraceSnapshot AsyncEngine::trace_snapshot() const {
  std::lock_guard lk(mu_);
  return snapshot_;
}

int64_t AsyncEngine::blocks_in_use() const {
  std::lock_guard lk(mu_);
  return blocks_in_use_;
}

void AsyncEngine::update_gauges() {
  EngineGauges g;
  const auto counts = engine_->class_counts();  // once per unit: one pass over the requests
  for (auto c : {PriorityClass::LS, PriorityClass::BE}) {
    g.running[size_t(c)] = counts.running[int(c)];
    g.waiting[size_t(c)] = counts.waiting[int(c)];
    g.preemptions[size_t(c)] = engine_->num_preemptions(c);
  }
  g.kv_usage = engine_->blocks().usage();
  const int64_t used = engine_->blocks().num_blocks() - engine_->blocks().num_free_blocks();
  std::lock_guard lk(mu_);
  gauges_ = g;
  blocks_in_use_ = used;
}

void AsyncEngine::handle(const TokenEvent& ev) {
  auto it = live_.find(ev.id);
  if (it == live_.end()) return;
  Live& L = it->second;
  if (ev.token >= 0) {
    metrics_->add_generation_tokens(L.cls, 1);
    if (L.last_token_s < 0) metrics_->observe_ttft(L.cls, ev.time_s - L.arrival_s);
    else metrics_->observe_itl(L.cls, ev.time_s - L.last_token_s);
    L.last_token_s = ev.time_s;
  }
  L.stream->push({ev.token, ev.finish, {}});
  if (ev.finish == Finish::None) return;
  const auto t = engine_->release_timing(ev.id);
  if (t) {
    recent_.push_back(*t);
    recent_.back().token_times_s = {};  // the trace needs the first token and the end only
    if (recent_.size() > kTraceRequests) recent_.pop_front();
  }
  if (ev.finish == Finish::Cancelled) {
    metrics_->add_finished(L.cls, "abort");
  } else {
    metrics_->add_finished(L.cls, ev.finish == Finish::Stop ? "stop" : "length");
    if (t) {
      metrics_->observe_e2e(L.cls, t->finish_s - t->arrival_s);
      if (t->first_scheduled_s >= 0) metrics_->observe_queue_time(L.cls, t->first_scheduled_s - t->arrival_s);
    }
  }
  live_.erase(it);
  --in_flight_;
}

void AsyncEngine::fail_all(const std::string& why) {
  std::vector<std::shared_ptr<RequestStream>> orphans;
  {
    std::lock_guard lk(mu_);
    failure_ = why;
    accepting_ = false;
    failed_ = true;
    for (auto& [id, s] : inbox_streams_) orphans.push_back(s);
    inbox_.clear();
    inbox_streams_.clear();
  }
  for (auto& [id, L] : live_) orphans.push_back(L.stream);
  live_.clear();
  for (auto& s : orphans) s->push({-1, Finish::None, "engine failure: " + why});
  in_flight_ = 0;
}

void AsyncEngine::loop() {
  std::vector<TokenEvent> events;
  std::vector<Request> subs;
  std::vector<std::pair<uint64_t, std::shared_ptr<RequestStream>>> sub_streams;
  std::vector<uint64_t> cancels;
  bool ran = false, cancelled_all = false;
  for (;;) {
    bool stopping = false;
    double deadline = 0;
    std::string injected;
    {
      std::unique_lock lk(mu_);
      auto news = [&] { return !inbox_.empty() || !cancels_.empty() || !injected_failure_.empty(); };
      if (!ran && !news()) {
        if (stopping_) {
          if (live_.empty()) return;  // stopped with nothing in flight
          cv_.wait_for(lk, std::chrono::milliseconds(5));
        } else {
          cv_.wait(lk, [&] { return news() || stopping_; });
        }
      }
      subs.swap(inbox_);
      sub_streams.swap(inbox_streams_);
      cancels.swap(cancels_);
      stopping = stopping_;
      deadline = deadline_s_;
      injected.swap(injected_failure_);
    }
    events.clear();
    try {
      if (!injected.empty()) throw Error(injected);
      for (size_t i = 0; i < subs.size(); ++i) {
        Request& r = subs[i];
        auto& stream = sub_streams[i].second;
        const PriorityClass cls = r.cls;
        const auto prompt = int64_t(r.prompt.size());
        const double arrival = r.arrival_s;
        const uint64_t id = r.id;
        try {
          engine_->submit(std::move(r));
        } catch (const Error& e) {  // refused: this request alone fails
          stream->push({-1, Finish::None, e.what()});
          --in_flight_;
          continue;
        }
        live_[id] = Live{stream, cls, arrival, -1};
        metrics_->add_prompt_tokens(cls, prompt);
      }
      subs.clear();
      sub_streams.clear();
      for (uint64_t id : cancels) engine_->cancel(id, events);
      cancels.clear();
      if (stopping && !cancelled_all && clock_.now() >= deadline) {
        for (const auto& [id, L] : live_) engine_->cancel(id, events);
        cancelled_all = true;
      }
      ran = engine_->step(events);
    } catch (const std::exception& e) {
      for (const auto& ev : events) handle(ev);
      fail_all(e.what());
      update_gauges();
      return;
    }
    for (const auto& ev : events) handle(ev);
    update_gauges();
  }
}

}  // namespace qllm::serve
