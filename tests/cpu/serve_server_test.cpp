// qllm serve over real HTTP on a loopback port, with the built-in tiny model on
// the cpu dispatcher: completions, chat, streaming, metrics, every bad-input
// case, disconnect-cancel, concurrent LS and BE clients, graceful shutdown and
// a bounded load test. Generated text is checked against the CPU reference
// model run directly on the same checkpoint.
#include "engine/cpu/reference_model.h"
#include "engine/cpu/sampling.h"
#include "engine/model/builtin.h"
#include "engine/model/checkpoint.h"
#include "engine/serve/server.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <thread>

using namespace qllm;
using json = nlohmann::json;

namespace {

constexpr const char* kModel = "builtin:tiny-mixtral";

void use_test_cache() {
  static const auto dir = test::temp_dir("serve-cache");
  ::setenv("QLLM_CACHE_DIR", dir.c_str(), 1);
}

EngineConfig config(int max_concurrent = 512) {
  use_test_cache();
  EngineConfig c;
  c.model_path = kModel;
  c.scheduler_dispatcher = "cpu";  // compared with the fp32 reference; auto picks host where a GPU is
  c.server_port = 0;
  c.server_max_concurrent_requests = max_concurrent;
  c.cpu_threads = 1;
  return c;
}

// The greedy continuation of `prompt` by the reference model, and its text.
struct Expected {
  std::vector<int32_t> ids;
  std::string text;
};

const cpu::ReferenceModel& reference() {
  static std::unique_ptr<cpu::ReferenceModel> m;
  if (!m) {
    use_test_cache();
    CheckpointOptions o;
    o.progress = false;
    m = std::make_unique<cpu::ReferenceModel>(Checkpoint::open(resolve_model_path(kModel, false), o));
  }
  return *m;
}

Expected greedy(const std::vector<int32_t>& prompt, int n) {
  const auto& m = reference();
  const auto tok = Tokenizer::from_file(resolve_model_path(kModel, false));
  auto cache = m.new_cache(int(prompt.size()) + n);
  auto logits = m.forward(cache, prompt);
  Expected e;
  SamplingParams sp;
  for (int i = 0; i < n; ++i) {
    const int32_t t = sample_token(logits, sp, uint64_t(i));
    e.ids.push_back(t);
    if (i + 1 < n) logits = m.forward(cache, std::span(&t, 1));
  }
  e.text = tok.decode(e.ids);
  return e;
}

// A running server for one test.
struct Running {
  std::unique_ptr<serve::Server> server;
  int port = 0;
  explicit Running(const EngineConfig& c) : server(serve::Server::create(c, false)) { port = server->start(); }
  ~Running() {
    server->shutdown(0);
    server->wait();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    return c;
  }
};

Running& shared_server() {
  static Running r(config());
  return r;
}

json post(const Running& s, const std::string& path, const std::string& body, int* status = nullptr) {
  auto c = s.client();
  auto res = c.Post(path.c_str(), body, "application/json");
  if (!res) ADD_FAILURE() << "no response: " << httplib::to_string(res.error());
  if (!res) return {};
  if (status) *status = res->status;
  return json::parse(res->body);
}

// A streamed response: the data payloads of its events, in order.
struct Stream {
  int status = 0;
  std::vector<std::string> data;
  std::string raw;
};

Stream post_stream(const Running& s, const std::string& path, const json& body,
                   std::function<bool(const Stream&)> keep_reading = nullptr) {
  auto c = s.client();
  Stream out;
  std::string buf;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& r) {
    out.status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    out.raw.append(d, n);
    buf.append(d, n);
    for (size_t p; (p = buf.find("\n\n")) != std::string::npos;) {
      const std::string ev = buf.substr(0, p);
      buf.erase(0, p + 2);
      if (ev.rfind("data: ", 0) == 0) out.data.push_back(ev.substr(6));
    }
    return keep_reading ? keep_reading(out) : true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  c.send(req, res, err);
  if (out.status == 0) out.status = res.status;
  if (err != httplib::Error::Success) out.raw += "[client error: " + httplib::to_string(err) + "]";
  return out;
}

std::vector<int32_t> prompt_of(int n, int seed) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(int32_t(3 + (seed * 31 + i * 7) % 200));
  return p;
}

json completion_body(const std::vector<int32_t>& prompt, int max_tokens, bool stream, int priority = 0) {
  json b = {{"model", "tiny-mixtral"}, {"prompt", prompt}, {"max_tokens", max_tokens},
            {"temperature", 0}, {"ignore_eos", true}, {"stream", stream}, {"priority", priority}};
  if (stream) b["stream_options"] = {{"include_usage", true}};
  return b;
}

// Sample value of a metric line that starts with `prefix` (name and labels).
double metric(const Running& s, const std::string& prefix) {
  auto c = s.client();
  auto res = c.Get("/metrics");
  EXPECT_TRUE(res);
  if (!res) return -1;
  std::istringstream in(res->body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(line.rfind(' ') + 1));
  ADD_FAILURE() << "no metric " << prefix;
  return -1;
}

double running_total(const Running& s) {
  return metric(s, "vllm:num_requests_running{model_name=\"tiny-mixtral\",priority_class=\"LS\"}") +
         metric(s, "vllm:num_requests_running{model_name=\"tiny-mixtral\",priority_class=\"BE\"}") +
         metric(s, "vllm:num_requests_waiting{model_name=\"tiny-mixtral\",priority_class=\"LS\"}") +
         metric(s, "vllm:num_requests_waiting{model_name=\"tiny-mixtral\",priority_class=\"BE\"}");
}

// Waits until nothing runs and no KV block is held.
bool drains(const Running& s, double seconds = 20) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (running_total(s) == 0 && metric(s, "vllm:kv_cache_usage_perc") == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST(Serve, ModelsAndHealth) {
  auto& s = shared_server();
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  int status = 0;
  const auto m = [&] {
    auto r = c.Get("/v1/models");
    status = r->status;
    return json::parse(r->body);
  }();
  EXPECT_EQ(status, 200);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "tiny-mixtral");
  EXPECT_GT(m["data"][0]["max_model_len"].get<int>(), 100);
  auto nf = c.Get("/v1/nothing");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  EXPECT_TRUE(json::parse(nf->body).contains("error"));
}

TEST(Serve, CompletionMatchesTheReferenceModel) {
  auto& s = shared_server();
  const auto prompt = prompt_of(9, 1);
  const auto want = greedy(prompt, 8);
  int status = 0;
  const auto r = post(s, "/v1/completions", completion_body(prompt, 8, false).dump(), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["model"], "tiny-mixtral");
  EXPECT_EQ(r["choices"][0]["text"], want.text);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], 9);
  EXPECT_EQ(r["usage"]["completion_tokens"], 8);
  EXPECT_EQ(r["usage"]["total_tokens"], 17);
}

TEST(Serve, StreamingGivesTheSameTextChunkByChunk) {
  auto& s = shared_server();
  const auto prompt = prompt_of(12, 2);
  const auto want = greedy(prompt, 10);
  const auto st = post_stream(s, "/v1/completions", completion_body(prompt, 10, true));
  ASSERT_EQ(st.status, 200) << st.raw;
  ASSERT_GE(st.data.size(), 13u) << st.raw;  // 10 tokens, the final chunk, usage, [DONE]
  EXPECT_EQ(st.data.back(), "[DONE]");
  std::string text;
  int token_chunks = 0;
  for (size_t i = 0; i + 2 < st.data.size(); ++i) {
    const auto j = json::parse(st.data[i]);
    EXPECT_EQ(j["object"], "text_completion");
    text += j["choices"][0]["text"].get<std::string>();
    if (i + 3 < st.data.size()) {
      EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
      ++token_chunks;
    } else {
      EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    }
  }
  EXPECT_EQ(token_chunks, 10);
  EXPECT_EQ(text, want.text);
  const auto usage = json::parse(st.data[st.data.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 10);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 12);
}

TEST(Serve, ChatUsesTheChatTemplate) {
  auto& s = shared_server();
  const json body = {{"messages", {{{"role", "user"}, {"content", "Hello there"}}}},
                     {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}};
  int status = 0;
  const auto r = post(s, "/v1/chat/completions", body.dump(), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["usage"]["completion_tokens"], 5);
  // The same conversation through /tokenize gives the prompt length the server used.
  const auto t = post(s, "/tokenize", json{{"messages", body["messages"]}}.dump(), &status);
  ASSERT_EQ(status, 200) << t.dump();
  EXPECT_EQ(r["usage"]["prompt_tokens"], t["count"]);
  // Its text is the reference continuation of those ids.
  std::vector<int32_t> ids = t["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(r["choices"][0]["message"]["content"], greedy(ids, 5).text);

  auto b2 = body;
  b2["stream"] = true;
  const auto st = post_stream(s, "/v1/chat/completions", b2);
  ASSERT_EQ(st.status, 200);
  ASSERT_GE(st.data.size(), 3u);
  const auto first = json::parse(st.data[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (size_t i = 0; i + 1 < st.data.size(); ++i) {
    const auto j = json::parse(st.data[i]);
    if (j["choices"][0]["delta"].contains("content")) text += j["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, r["choices"][0]["message"]["content"]);
  EXPECT_EQ(st.data.back(), "[DONE]");
}

TEST(Serve, StopStringsEndTheTextBeforeThem) {
  auto& s = shared_server();
  const auto prompt = prompt_of(6, 3);
  const auto want = greedy(prompt, 12);
  ASSERT_GE(want.text.size(), 6u);
  // A stop string from the middle of the expected text.
  const size_t at = want.text.size() / 2;
  const std::string stop = want.text.substr(at, 2);
  const size_t first = want.text.find(stop);
  auto body = completion_body(prompt, 12, false);
  body["stop"] = stop;
  int status = 0;
  const auto r = post(s, "/v1/completions", body.dump(), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["choices"][0]["text"], want.text.substr(0, first));
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  body["stream"] = true;
  const auto st = post_stream(s, "/v1/completions", body);
  std::string text;
  std::string fin;
  for (const auto& d : st.data) {
    if (d == "[DONE]") continue;
    const auto j = json::parse(d);
    if (j["choices"].empty()) continue;
    text += j["choices"][0]["text"].get<std::string>();
    if (!j["choices"][0]["finish_reason"].is_null()) fin = j["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, want.text.substr(0, first));
  EXPECT_EQ(fin, "stop");
  EXPECT_TRUE(drains(s));
}

TEST(Serve, BadRequestsGetOpenAiErrors) {
  auto& s = shared_server();
  struct Case {
    std::string path, body;
    int status;
    std::string param, needle;
  };
  const std::vector<Case> cases = {
      {"/v1/completions", "{not json", 400, "", "JSON"},
      {"/v1/completions", "[1, 2]", 400, "", "object"},
      {"/v1/completions", R"({"prompt": 5})", 400, "prompt", "prompt"},
      {"/v1/completions", R"({"max_tokens": 4})", 400, "prompt", "prompt"},
      {"/v1/completions", R"({"prompt": "hi", "model": "gpt-4"})", 404, "model", "gpt-4"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 0})", 400, "max_tokens", "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": "many"})", 400, "max_tokens", "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "temperature": 9})", 400, "temperature", "temperature"},
      {"/v1/completions", R"({"prompt": [1, 2, 99999999]})", 400, "prompt", "99999999"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 100000000})", 400, "max_tokens", "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "n": 3})", 400, "n", "n"},
      {"/v1/chat/completions", R"({"messages": []})", 400, "messages", "messages"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user"}]})", 400, "messages", "content"},
  };
  for (const auto& k : cases) {
    int status = 0;
    const auto r = post(s, k.path, k.body, &status);
    EXPECT_EQ(status, k.status) << k.body << " -> " << r.dump();
    ASSERT_TRUE(r.contains("error")) << k.body;
    const auto& e = r["error"];
    EXPECT_TRUE(e["message"].is_string());
    EXPECT_NE(e["message"].get<std::string>().find(k.needle), std::string::npos) << e.dump();
    if (!k.param.empty()) {  // the field, or a part of it (messages[0].content)
      ASSERT_TRUE(e["param"].is_string()) << e.dump();
      EXPECT_EQ(e["param"].get<std::string>().rfind(k.param, 0), 0u) << e.dump();
    }
    EXPECT_TRUE(e["type"].is_string());
  }
  // A prompt longer than the context.
  std::vector<int32_t> huge(100000, 5);
  int status = 0;
  const auto r = post(s, "/v1/completions", json{{"prompt", huge}, {"max_tokens", 1}}.dump(), &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("100000"), std::string::npos) << r.dump();
  // None of this left anything behind, and good requests still work.
  EXPECT_TRUE(drains(s));
  post(s, "/v1/completions", completion_body(prompt_of(4, 4), 2, false).dump(), &status);
  EXPECT_EQ(status, 200);
}

TEST(Serve, TooManyConcurrentRequestsAreRefused) {
  Running s(config(/*max_concurrent=*/1));
  std::atomic<bool> started{false}, checked{false};
  std::thread long_one([&] {
    post_stream(s, "/v1/completions", completion_body(prompt_of(4, 5), 1000, true), [&](const Stream& st) {
      started = !st.data.empty();
      while (!checked) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return false;  // hang up once the second request has been answered
    });
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  int status = 0;
  const json r = post(s, "/v1/completions", completion_body(prompt_of(4, 6), 2, false).dump(), &status);
  checked = true;
  long_one.join();
  EXPECT_EQ(status, 429);
  EXPECT_EQ(r.value("/error/type"_json_pointer, std::string()), "rate_limit_error") << r.dump();
  EXPECT_TRUE(drains(s));
  post(s, "/v1/completions", completion_body(prompt_of(4, 6), 2, false).dump(), &status);
  EXPECT_EQ(status, 200);
}

TEST(Serve, ClientDisconnectCancelsAndFreesBlocks) {
  Running s(config());
  const double aborts_before = metric(
      s, "vllm:request_success_total{model_name=\"tiny-mixtral\",priority_class=\"BE\",finished_reason=\"abort\"}");
  const auto st = post_stream(s, "/v1/completions", completion_body(prompt_of(16, 7), 2000, true, /*priority=*/3),
                              [](const Stream& x) { return x.data.size() < 5; });
  EXPECT_EQ(st.status, 200);
  EXPECT_EQ(st.data.size(), 5u);
  ASSERT_TRUE(drains(s)) << "the cancelled request still runs or holds KV blocks";
  EXPECT_EQ(metric(s, "vllm:request_success_total{model_name=\"tiny-mixtral\",priority_class=\"BE\","
                      "finished_reason=\"abort\"}"),
            aborts_before + 1);
  // Far fewer than 2000 tokens were generated.
  EXPECT_LT(metric(s, "vllm:generation_tokens_total{model_name=\"tiny-mixtral\",priority_class=\"BE\"}"), 500);
}

// LS (priority 0) and BE (priority 5) clients at once: every one gets the
// reference text, and the metrics count each class's tokens.
TEST(Serve, ConcurrentClientsOfBothClasses) {
  Running s(config());
  constexpr int kClients = 16;
  std::vector<std::thread> threads;
  std::vector<std::string> texts(kClients);
  std::vector<int> statuses(kClients);
  for (int i = 0; i < kClients; ++i)
    threads.emplace_back([&, i] {
      const auto body = completion_body(prompt_of(5 + i, 100 + i), 6, i % 2 == 0, i % 2 ? 5 : 0);
      if (i % 2 == 0) {
        const auto st = post_stream(s, "/v1/completions", body);
        statuses[size_t(i)] = st.status;
        for (const auto& d : st.data) {
          if (d == "[DONE]") continue;
          const auto j = json::parse(d);
          if (!j["choices"].empty()) texts[size_t(i)] += j["choices"][0]["text"].get<std::string>();
        }
      } else {
        int status = 0;
        const auto r = post(s, "/v1/completions", body.dump(), &status);
        statuses[size_t(i)] = status;
        if (status == 200) texts[size_t(i)] = r["choices"][0]["text"];
      }
    });
  for (auto& t : threads) t.join();
  int64_t ls_prompt = 0, be_prompt = 0;
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(statuses[size_t(i)], 200) << i;
    EXPECT_EQ(texts[size_t(i)], greedy(prompt_of(5 + i, 100 + i), 6).text) << "client " << i;
    (i % 2 ? be_prompt : ls_prompt) += 5 + i;
  }
  EXPECT_EQ(metric(s, "vllm:prompt_tokens_total{model_name=\"tiny-mixtral\",priority_class=\"LS\"}"), ls_prompt);
  EXPECT_EQ(metric(s, "vllm:prompt_tokens_total{model_name=\"tiny-mixtral\",priority_class=\"BE\"}"), be_prompt);
  EXPECT_EQ(metric(s, "vllm:generation_tokens_total{model_name=\"tiny-mixtral\",priority_class=\"LS\"}"), 48);
  EXPECT_EQ(metric(s, "vllm:time_to_first_token_seconds_count{model_name=\"tiny-mixtral\",priority_class=\"BE\"}"),
            8);
  EXPECT_TRUE(drains(s));
}

// Shutdown: in-flight streams end properly (finish_reason and [DONE]) within
// the deadline, new requests are refused, and shutdown returns promptly.
TEST(Serve, GracefulShutdownEndsStreamsAndRefusesNewWork) {
  auto s = std::make_unique<Running>(config());
  std::atomic<int> chunks{0};
  Stream st;
  std::thread client([&] {
    st = post_stream(*s, "/v1/completions", completion_body(prompt_of(8, 9), 3000, true), [&](const Stream& x) {
      chunks = int(x.data.size());
      return true;
    });
  });
  while (chunks < 3) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto t0 = std::chrono::steady_clock::now();
  s->server->shutdown(0.2);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  client.join();
  EXPECT_LT(took, 5.0);
  ASSERT_GE(st.data.size(), 3u);
  EXPECT_EQ(st.data.back(), "[DONE]") << st.raw.substr(st.raw.size() > 400 ? st.raw.size() - 400 : 0);
  std::string fin;
  for (const auto& d : st.data) {
    if (d == "[DONE]") continue;
    const auto j = json::parse(d);
    if (!j["choices"].empty() && !j["choices"][0]["finish_reason"].is_null()) fin = j["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(fin, "abort");
  auto c = s->client();
  c.set_connection_timeout(1);
  auto r = c.Post("/v1/completions", completion_body(prompt_of(3, 1), 1, false).dump(), "application/json");
  EXPECT_TRUE(!r || r->status == 503);
}

// Load: hundreds of concurrent streaming requests, no error, and afterwards
// nothing runs and no KV block is held.
TEST(Serve, HundredsOfConcurrentStreams) {
  Running s(config(512));
  constexpr int kClients = 300;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, bad{0};
  for (int i = 0; i < kClients; ++i)
    threads.emplace_back([&, i] {
      const auto st = post_stream(s, "/v1/completions", completion_body(prompt_of(6, i), 8, true, i % 3 ? 5 : 0));
      const bool good = st.status == 200 && !st.data.empty() && st.data.back() == "[DONE]" &&
                        st.raw.find("\"error\"") == std::string::npos;
      (good ? ok : bad)++;
      if (!good && bad.load() <= 3) ADD_FAILURE() << "status " << st.status << ": " << st.raw.substr(0, 300);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_TRUE(drains(s));
  EXPECT_EQ(metric(s, "vllm:generation_tokens_total{model_name=\"tiny-mixtral\",priority_class=\"LS\"}") +
                metric(s, "vllm:generation_tokens_total{model_name=\"tiny-mixtral\",priority_class=\"BE\"}"),
            8 * kClients);
}

// A failed engine: open streams end with an error event, /health answers 503,
// new requests get 503 with the reason, and the server process stays up.
TEST(Serve, EngineFailureIsReportedNotFatal) {
  Running s(config());
  std::atomic<int> chunks{0};
  Stream st;
  std::thread client([&] {
    st = post_stream(s, "/v1/completions", completion_body(prompt_of(8, 9), 3000, true), [&](const Stream& x) {
      chunks = int(x.data.size());
      return true;
    });
  });
  while (chunks < 2) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  s.server->inject_engine_failure("simulated dispatcher fault");
  client.join();
  ASSERT_GE(st.data.size(), 3u);
  EXPECT_EQ(st.data.back(), "[DONE]");
  const auto err = json::parse(st.data[st.data.size() - 2]);
  ASSERT_TRUE(err.contains("error")) << err.dump();
  EXPECT_NE(err["error"]["message"].get<std::string>().find("simulated dispatcher fault"), std::string::npos);
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  EXPECT_NE(h->body.find("simulated dispatcher fault"), std::string::npos);
  int status = 0;
  const json r = post(s, "/v1/completions", completion_body(prompt_of(3, 1), 1, false).dump(), &status);
  EXPECT_EQ(status, 503);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
}
