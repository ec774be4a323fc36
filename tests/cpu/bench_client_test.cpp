// The bench client against a fake OpenAI-compatible server on a loopback
// port: streamed requests timed on the client, open and closed loop, the
// concurrency cap, and every kind of failure recorded without stopping the
// run. The fake server streams one chunk per token with a short sleep between
// them, split across HTTP chunks at varying places, then a usage chunk and
// [DONE]; the path prefix picks a misbehaviour.
#include "engine/bench/client.h"
#include "engine/bench/runner.h"
#include "engine/common/error.h"
#include "engine/model/synthetic_init.h"
#include "engine/workload/generator.h"
#include "engine/workload/workload_spec.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace qllm::bench {
namespace {

using nlohmann::json;
using workload::RequestClass;
using workload::RequestRecord;
using workload::WorkloadRequest;

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not found in: " << text;
}

void bump_max(std::atomic<int>& m, int v) {
  int cur = m.load();
  while (cur < v && !m.compare_exchange_weak(cur, v)) {
  }
}

enum class Mode { Ok, Chat, Cut, ErrorChunk, NoDone, LsFails, Slow, Flush };

class FakeServer {
 public:
  explicit FakeServer(int token_ms = 2) : token_ms_(token_ms) {
    svr_.new_task_queue = [] { return new httplib::ThreadPool(48); };
    svr_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"fake-model","object":"model","max_model_len":2048}]})",
                      "application/json");
    });
    route("/v1/completions", Mode::Ok);
    route("/v1/chat/completions", Mode::Chat);
    route("/cut/v1/completions", Mode::Cut);
    route("/errchunk/v1/completions", Mode::ErrorChunk);
    route("/nodone/v1/completions", Mode::NoDone);
    route("/lsfail/v1/completions", Mode::LsFails);
    route("/slow/v1/completions", Mode::Slow);
    route("/flush/v1/completions", Mode::Flush);
    svr_.Post("/bad/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.status = 400;
      res.set_content(
          R"({"error":{"message":"prompt is too long","type":"invalid_request_error","param":"prompt","code":null}})",
          "application/json");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~FakeServer() {
    stopping_ = true;
    svr_.stop();
    thread_.join();
  }

  std::string url(std::string_view prefix = "") const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(prefix);
  }
  int max_in_flight() const { return max_in_flight_; }
  int max_be_in_flight() const { return max_be_in_flight_; }
  std::vector<json> bodies() {
    std::lock_guard lk(m_);
    return bodies_;
  }

 private:
  void route(const std::string& path, Mode mode) {
    svr_.Post(path, [this, mode](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, mode);
    });
  }

  static std::string event(const json& j) { return "data: " + j.dump() + "\n\n"; }

  void handle(const httplib::Request& req, httplib::Response& res, Mode mode) {
    const json body = json::parse(req.body);
    {
      std::lock_guard lk(m_);
      bodies_.push_back(body);
    }
    const int64_t n = body.at("max_tokens").get<int64_t>();
    const bool be = body.value("priority", 0) > 0;
    if (mode == Mode::LsFails && !be) {
      res.status = 400;
      res.set_content(R"({"error":{"message":"no LS today","type":"invalid_request_error"}})",
                      "application/json");
      return;
    }
    bump_max(max_in_flight_, ++in_flight_);
    if (be) bump_max(max_be_in_flight_, ++be_in_flight_);
    const int prompt = body.contains("prompt") ? int(body["prompt"].size()) : 5;
    const bool chat = mode == Mode::Chat;
    // Leaves the in-flight count before the last bytes go out, so a client
    // that replaces a finished request at once is never counted twice.
    auto leave = [this, be] {
      --in_flight_;
      if (be) --be_in_flight_;
    };
    res.set_chunked_content_provider(
        "text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
          size_t split = 3;
          auto send = [&](const std::string& e) {  // one event in two HTTP chunks
            split = split % e.size() + 1;
            sink.write(e.data(), std::min(split, e.size()));
            if (split < e.size()) sink.write(e.data() + split, e.size() - split);
          };
          if (mode == Mode::Slow)
            for (int i = 0; i < 200 && !stopping_; ++i)
              std::this_thread::sleep_for(std::chrono::milliseconds(10));
          if (chat)
            send(event({{"choices", {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                                      {"finish_reason", nullptr}}}}}));
          for (int64_t i = 0; i < n; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(token_ms_));
            if (mode == Mode::Cut && i == n / 2) {
              leave();
              return false;  // the connection closes mid-stream
            }
            if (mode == Mode::ErrorChunk && i == 1) {
              leave();
              send(event({{"error", {{"message", "engine failed"}, {"type", "internal_error"}}}}));
              send("data: [DONE]\n\n");
              sink.done();
              return true;
            }
            const bool last = i + 1 == n && mode != Mode::Chat && mode != Mode::Flush;
            json choice = {{"index", 0}, {"finish_reason", last ? json("length") : json(nullptr)}};
            // Flush: the last token's text is held back (an unfinished character).
            const std::string text = mode == Mode::Flush && i + 1 == n ? "" : "t";
            if (chat)
              choice["delta"] = {{"content", text}};
            else
              choice["text"] = text;
            send(event({{"choices", {choice}}, {"usage", nullptr}}));
          }
          if (chat)  // a chunk that only closes the stream
            send(event({{"choices", {{{"index", 0}, {"delta", json::object()}, {"finish_reason", "length"}}}}}));
          if (mode == Mode::Flush)  // closes the stream with the held-back text
            send(event({{"choices", {{{"index", 0}, {"text", "\xC3\xA9"}, {"finish_reason", "length"}}}}}));
          leave();
          send(event({{"choices", json::array()},
                      {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", n}, {"total_tokens", prompt + n}}}}));
          if (mode != Mode::NoDone) send("data: [DONE]\n\n");
          sink.done();
          return true;
        });
  }

  int token_ms_;
  httplib::Server svr_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0}, max_in_flight_{0}, be_in_flight_{0}, max_be_in_flight_{0};
  std::mutex m_;
  std::vector<json> bodies_;
};

workload::WorkloadSpec spec(std::string_view yaml) { return workload::parse_workload_spec(yaml, "t.yaml"); }

const char* kOpenLoop = R"(
name: open
seed: 5
num_requests: 12
arrivals: {process: poisson, rate: 60}
ls_fraction: 0.5
lengths: {prompt: [4, 16], output: [3, 8]}
)";

BenchOptions options_for(const FakeServer& s, std::string_view prefix = "") {
  BenchOptions o;
  o.url = parse_url(s.url(prefix));
  o.request.model = "fake-model";
  o.request.timeout_s = 10;
  return o;
}

// The checks every successful streamed record passes.
void expect_well_formed(const RequestRecord& r, int64_t max_tokens) {
  SCOPED_TRACE("request " + std::to_string(r.id));
  EXPECT_TRUE(r.finished_ok) << r.error;
  EXPECT_TRUE(r.error.empty());
  EXPECT_EQ(r.output_tokens, max_tokens);
  ASSERT_EQ(int64_t(r.token_times_s.size()), max_tokens);
  EXPECT_EQ(r.first_token_s, r.token_times_s.front());
  EXPECT_GT(workload::ttft(r), 0.0);
  for (size_t i = 1; i < r.token_times_s.size(); ++i) EXPECT_GE(r.token_times_s[i], r.token_times_s[i - 1]);
  EXPECT_GE(r.finish_s, r.token_times_s.back());
  EXPECT_FALSE(workload::has_time(r.first_scheduled_s));
}

TEST(BenchUrl, Forms) {
  auto u = parse_url("http://127.0.0.1:8000");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8000);
  EXPECT_EQ(u.prefix, "");
  EXPECT_EQ(u.text, "http://127.0.0.1:8000");
  EXPECT_EQ(parse_url("http://localhost:8000/v1/").text, "http://localhost:8000");
  EXPECT_EQ(parse_url("HTTP://example.org").port, 80);
  u = parse_url("http://h:1/proxy/v1");
  EXPECT_EQ(u.prefix, "/proxy");
  u = parse_url("http://[::1]:9000/");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.text, "http://[::1]:9000");
}

TEST(BenchUrl, Refused) {
  auto error_of = [](std::string_view url) -> std::string {
    try {
      parse_url(url);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_TRUE(contains(error_of("https://h:1"), "only http:// is supported"));
  EXPECT_TRUE(contains(error_of("h:8000"), "expected http://"));
  EXPECT_TRUE(contains(error_of("http://:8000"), "no host"));
  EXPECT_TRUE(contains(error_of("http://h:80x"), "not a number"));
  EXPECT_TRUE(contains(error_of("http://h:0"), "out of range"));
  EXPECT_TRUE(contains(error_of("http://h:"), "empty port"));
  EXPECT_TRUE(contains(error_of("http://[::1"), "unterminated"));
  EXPECT_TRUE(contains(error_of("http://u@h:1"), "not supported"));
}

TEST(BenchRequest, CompletionsBody) {
  WorkloadRequest w;
  w.id = 7;
  w.cls = RequestClass::BE;
  w.prompt_tokens = 10;
  w.max_tokens = 4;
  RequestSettings s;
  s.model = "m";
  s.vocab = 300;
  s.seed = 11;
  s.be_priority = 5;
  const json b = request_body(w, s);
  EXPECT_EQ(b["model"], "m");
  EXPECT_EQ(b["max_tokens"], 4);
  EXPECT_EQ(b["ignore_eos"], true);
  EXPECT_EQ(b["stream"], true);
  EXPECT_EQ(b["stream_options"]["include_usage"], true);
  EXPECT_EQ(b["priority"], 5);
  EXPECT_EQ(b["temperature"], 0.0);
  ASSERT_EQ(b["prompt"].size(), 10u);
  // The same ids `qllm run` gives request 7 (workload_runner.cpp).
  for (size_t i = 0; i < 10; ++i) {
    const auto want = int32_t(synth::splitmix64(synth::splitmix64(11 ^ uint64_t(7)) + i) % 300);
    EXPECT_EQ(b["prompt"][i], want);
  }
  w.cls = RequestClass::LS;
  EXPECT_EQ(request_body(w, s)["priority"], 0);
  s.model.clear();
  EXPECT_FALSE(request_body(w, s).contains("model"));
}

TEST(BenchRequest, ChatBody) {
  WorkloadRequest w;
  w.prompt_tokens = 4;
  w.max_tokens = 2;
  RequestSettings s;
  s.endpoint = ApiEndpoint::Chat;
  const json b = request_body(w, s);
  EXPECT_FALSE(b.contains("prompt"));
  ASSERT_EQ(b["messages"].size(), 1u);
  EXPECT_EQ(b["messages"][0]["role"], "user");
  EXPECT_EQ(b["messages"][0]["content"], "hi hi hi hi");
  EXPECT_EQ(synthetic_words(0), "hi");
  EXPECT_EQ(synthetic_prompt(1, 0, 256, 0).size(), 1u);
}

TEST(BenchStreamReader, CountsTokensNotBookkeepingChunks) {
  StreamReader r(ApiEndpoint::Chat);
  EXPECT_TRUE(r.on_payload(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})", 0.1));
  EXPECT_TRUE(r.on_payload(R"({"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]})", 0.2));
  EXPECT_TRUE(r.on_payload(R"({"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]})", 0.3));
  EXPECT_TRUE(r.on_payload(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})", 0.4));
  EXPECT_TRUE(r.on_payload(R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}})", 0.5));
  EXPECT_FALSE(r.on_payload("[DONE]", 0.6));
  EXPECT_EQ(r.token_times(), (std::vector<double>{0.2, 0.3}));
  EXPECT_EQ(r.chunks(), 4);
  EXPECT_EQ(r.usage_prompt_tokens(), 9);
  EXPECT_EQ(r.usage_completion_tokens(), 3);
  EXPECT_EQ(r.finish_reason(), "stop");
  EXPECT_TRUE(r.done());
  EXPECT_EQ(r.done_s(), 0.6);
  EXPECT_TRUE(r.error().empty());
  EXPECT_FALSE(r.on_payload(R"({"choices":[{"text":"late"}]})", 0.7));
  EXPECT_EQ(r.token_times().size(), 2u);
}

TEST(BenchStreamReader, CompletionsTextWithFinishCounts) {
  StreamReader r(ApiEndpoint::Completions);
  r.on_payload(R"({"choices":[{"index":0,"text":"x","finish_reason":"length"}],"usage":null})", 1.0);
  r.on_payload(R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})", 2.0);
  EXPECT_EQ(r.token_times(), std::vector<double>{1.0});
  EXPECT_EQ(r.usage_completion_tokens(), -1);
}

TEST(BenchStreamReader, Failures) {
  {
    StreamReader r(ApiEndpoint::Completions);
    EXPECT_FALSE(r.on_payload(R"({"error":{"message":"boom"}})", 0));
    EXPECT_TRUE(contains(r.error(), "boom"));
  }
  {
    StreamReader r(ApiEndpoint::Completions);
    EXPECT_FALSE(r.on_payload(R"({"object":"error","message":"old style"})", 0));
    EXPECT_TRUE(contains(r.error(), "old style"));
  }
  {
    StreamReader r(ApiEndpoint::Completions);
    EXPECT_FALSE(r.on_payload("not json", 0));
    EXPECT_TRUE(contains(r.error(), "not a JSON object"));
  }
  {
    StreamReader r(ApiEndpoint::Completions);
    r.on_payload(R"({"choices":[{"text":"","finish_reason":"abort"}]})", 0);
    r.on_payload("[DONE]", 0);
    EXPECT_TRUE(contains(r.error(), "abort"));
  }
  EXPECT_EQ(error_message_of(R"({"error":{"message":"m"}})"), "m");
  EXPECT_EQ(error_message_of(R"({"detail":"d"})"), "d");
  EXPECT_EQ(error_message_of("plain\ntext"), "plain text");
  EXPECT_EQ(error_message_of(""), "(empty body)");
}

TEST(BenchServer, ModelsAndUnreachable) {
  std::string dead_url;
  {
    FakeServer s;
    const json m = fetch_models(parse_url(s.url()), 5);
    EXPECT_EQ(pick_model(m, ""), "fake-model");
    EXPECT_EQ(pick_model(m, "other"), "other");
    dead_url = s.url();
  }
  // The port is free again: nobody answers there.
  try {
    fetch_models(parse_url(dead_url), 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "cannot reach the server at " + dead_url));
  }
  EXPECT_THROW(pick_model(json::object(), ""), Error);
}

TEST(BenchRun, OpenLoopRecordsEveryRequest) {
  FakeServer server;
  const auto sp = spec(kOpenLoop);
  const auto want = workload::generate_open_loop(sp, {});
  const auto run = run_bench(sp, {}, options_for(server));
  ASSERT_EQ(run.records.size(), want.size());
  ASSERT_EQ(run.traces.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& r = run.records[i];
    EXPECT_EQ(r.id, want[i].id);
    EXPECT_EQ(r.cls, want[i].cls);
    EXPECT_EQ(r.arrival_s, want[i].arrival_s);
    EXPECT_EQ(r.prompt_tokens, want[i].prompt_tokens);
    expect_well_formed(r, want[i].max_tokens);
    EXPECT_GE(run.traces[i].sent_s, r.arrival_s);
    EXPECT_LT(run.traces[i].sent_s, r.arrival_s + 0.5);  // sent on time, not after the others
    EXPECT_EQ(run.traces[i].http_status, 200);
    EXPECT_EQ(run.traces[i].finish_reason, "length");
  }
  EXPECT_GE(run.duration_s, want.back().arrival_s);
  // What the server received.
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), want.size());
  for (const auto& b : bodies) {
    EXPECT_EQ(b["model"], "fake-model");
    EXPECT_EQ(b["stream"], true);
    EXPECT_EQ(b["ignore_eos"], true);
    for (const auto& id : b["prompt"]) EXPECT_LT(id.get<int64_t>(), 256);
  }
  int ls = 0;
  for (const auto& w : want) ls += w.cls == RequestClass::LS;
  int priority0 = 0;
  for (const auto& b : bodies) priority0 += b["priority"] == 0;
  EXPECT_EQ(priority0, ls);
}

TEST(BenchRun, ChatEndpoint) {
  FakeServer server;
  auto o = options_for(server);
  o.request.endpoint = ApiEndpoint::Chat;
  const auto sp = spec(kOpenLoop);
  const auto want = workload::generate_open_loop(sp, {});
  const auto run = run_bench(sp, {}, o);
  ASSERT_EQ(run.records.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    expect_well_formed(run.records[i], want[i].max_tokens);
    EXPECT_EQ(run.records[i].prompt_tokens, 5);  // the server's usage count
  }
}

TEST(BenchRun, HeldBackTextFlushedAtTheEndIsNotAnExtraToken) {
  FakeServer server;
  const auto sp = spec(kOpenLoop);
  const auto want = workload::generate_open_loop(sp, {});
  const auto run = run_bench(sp, {}, options_for(server, "/flush"));
  ASSERT_EQ(run.records.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    expect_well_formed(run.records[i], want[i].max_tokens);
    EXPECT_EQ(run.traces[i].chunks, want[i].max_tokens + 1);
  }
}

TEST(BenchRun, HttpErrorsAreRecordedAndTheRunGoesOn) {
  FakeServer server;
  const auto sp = spec(kOpenLoop);
  const auto run = run_bench(sp, {}, options_for(server, "/bad"));
  ASSERT_EQ(run.records.size(), 12u);
  for (size_t i = 0; i < run.records.size(); ++i) {
    const auto& r = run.records[i];
    EXPECT_FALSE(r.finished_ok);
    EXPECT_EQ(r.error, "HTTP 400: prompt is too long");
    EXPECT_TRUE(r.token_times_s.empty());
    EXPECT_FALSE(workload::has_time(r.finish_s));
    EXPECT_EQ(run.traces[i].http_status, 400);
  }
}

TEST(BenchRun, SomeFailSomeSucceed) {
  FakeServer server;
  const auto sp = spec(kOpenLoop);
  const auto want = workload::generate_open_loop(sp, {});
  const auto run = run_bench(sp, {}, options_for(server, "/lsfail"));
  ASSERT_EQ(run.records.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].cls == RequestClass::LS) {
      EXPECT_FALSE(run.records[i].finished_ok);
      EXPECT_EQ(run.records[i].error, "HTTP 400: no LS today");
    } else {
      expect_well_formed(run.records[i], want[i].max_tokens);
    }
  }
  const auto summary = workload::summarize(run.records, sp, run.duration_s);
  EXPECT_EQ(summary.ls.completed, 0);
  EXPECT_EQ(summary.be.failed, 0);
  EXPECT_EQ(summary.all.requests, int64_t(want.size()));
}

TEST(BenchRun, StreamCutOffMidway) {
  FakeServer server;
  const auto sp = spec(kOpenLoop);
  const auto run = run_bench(sp, {}, options_for(server, "/cut"));
  ASSERT_EQ(run.records.size(), 12u);
  for (const auto& r : run.records) {
    EXPECT_FALSE(r.finished_ok);
    EXPECT_TRUE(contains(r.error, "the stream broke off after")) << r.error;
    EXPECT_FALSE(workload::has_time(r.finish_s));
    EXPECT_FALSE(r.token_times_s.empty());  // the tokens before the cut were seen
    EXPECT_EQ(r.output_tokens, int64_t(r.token_times_s.size()));
  }
}

TEST(BenchRun, ErrorChunk) {
  FakeServer server;
  const auto run = run_bench(spec(kOpenLoop), {}, options_for(server, "/errchunk"));
  ASSERT_EQ(run.records.size(), 12u);
  for (const auto& r : run.records) {
    EXPECT_FALSE(r.finished_ok);
    EXPECT_EQ(r.error, "error in stream: engine failed");
    EXPECT_EQ(r.token_times_s.size(), 1u);
  }
}

TEST(BenchRun, StreamWithoutDone) {
  FakeServer server;
  const auto run = run_bench(spec(kOpenLoop), {}, options_for(server, "/nodone"));
  ASSERT_EQ(run.records.size(), 12u);
  for (const auto& r : run.records) {
    EXPECT_FALSE(r.finished_ok);
    EXPECT_TRUE(contains(r.error, "ended before data: [DONE]"));
  }
}

TEST(BenchRun, Timeout) {
  FakeServer server;
  auto o = options_for(server, "/slow");
  o.request.timeout_s = 0.3;
  const auto t0 = std::chrono::steady_clock::now();
  const auto run = run_bench(spec("name: s\nnum_requests: 2\narrivals: {rate: 100}\n"
                                  "lengths: {prompt: 4, output: 2}\n"),
                             {}, o);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.5);
  ASSERT_EQ(run.records.size(), 2u);
  for (const auto& r : run.records) {
    EXPECT_FALSE(r.finished_ok);
    EXPECT_TRUE(contains(r.error, "timed out after 0.3 s"));
  }
}

TEST(BenchRun, ClosedLoopKeepsConcurrency) {
  FakeServer server(3);
  const auto sp = spec(R"(
name: closed
seed: 2
duration_s: 0.4
be_concurrency: 3
arrivals: {process: poisson, rate: 20}
lengths: {prompt: [4, 8], output: 10}
ls: {output: 3}
)");
  const auto run = run_bench(sp, {}, options_for(server));
  const size_t open = workload::generate_open_loop(sp, {}).size();
  ASSERT_GT(run.records.size(), open + 3);
  EXPECT_EQ(run.max_closed_loop_in_flight, 3);
  EXPECT_EQ(server.max_be_in_flight(), 3);
  std::vector<const RequestRecord*> be;
  for (const auto& r : run.records) {
    expect_well_formed(r, r.cls == RequestClass::LS ? 3 : 10);
    if (r.cls == RequestClass::BE) be.push_back(&r);
  }
  EXPECT_EQ(be.size(), run.records.size() - open);
  // Sampled over the closed-loop window, three BE requests are in flight
  // (save for the instants between one finishing and its successor leaving).
  int samples = 0, three = 0;
  for (double t = 0.01; t < 0.35; t += 0.0037) {
    int n = 0;
    for (const auto* r : be) n += r->arrival_s <= t && t < r->finish_s;
    EXPECT_LE(n, 3) << "at " << t;
    ++samples;
    three += n == 3;
  }
  EXPECT_GE(three, samples * 9 / 10);
  // Each replacement arrives when its predecessor finished.
  for (const auto* r : be) {
    if (r->arrival_s > 0) {
      EXPECT_GT(r->arrival_s, 0.02);
    }
  }
}

TEST(BenchRun, MaxConcurrencyCapsRequestsInFlight) {
  FakeServer server;
  auto o = options_for(server);
  o.max_concurrency = 2;
  int progress_calls = 0;
  o.on_progress = [&](const BenchProgress& p) {
    ++progress_calls;
    EXPECT_LE(p.in_flight, 2);
  };
  const auto sp = spec("name: burst\nnum_requests: 8\narrivals: {rate: 10000}\n"
                       "lengths: {prompt: 4, output: 6}\n");
  const auto run = run_bench(sp, {}, o);
  ASSERT_EQ(run.records.size(), 8u);
  for (const auto& r : run.records) expect_well_formed(r, 6);
  EXPECT_EQ(run.max_in_flight, 2);
  EXPECT_LE(server.max_in_flight(), 2);
  EXPECT_EQ(progress_calls, 8);
  // The later ones waited on the client: sent well after their arrival.
  double latest_wait = 0;
  for (size_t i = 0; i < run.records.size(); ++i)
    latest_wait = std::max(latest_wait, run.traces[i].sent_s - run.records[i].arrival_s);
  EXPECT_GT(latest_wait, 0.02);
}

TEST(BenchRun, RequestRateOverride) {
  auto sp = spec(kOpenLoop);
  override_request_rate(sp, 5);
  EXPECT_EQ(sp.arrivals_rate, 5);
  workload::validate(sp, "t.yaml");
  EXPECT_THROW(override_request_rate(sp, 0), Error);
  EXPECT_THROW(override_request_rate(sp, std::nan("")), Error);
  sp.arrivals_process = "trace";
  EXPECT_THROW(override_request_rate(sp, 5), Error);
}

TEST(BenchRun, TracesJson) {
  RequestTrace t;
  t.id = 3;
  t.http_status = 200;
  const json j = traces_to_json({t});
  ASSERT_EQ(j.size(), 1u);
  EXPECT_TRUE(j[0]["sent_s"].is_null());
  EXPECT_EQ(j[0]["id"], 3);
  EXPECT_EQ(j[0]["http_status"], 200);
}

}  // namespace
}  // namespace qllm::bench
