// One streamed request to an OpenAI-compatible server, timed on the client.
//
// The pieces `qllm bench` builds a run from: the server's address, its
// /v1/models answer, the JSON body of a workload request (synthetic token-id
// prompt or a chat message of N words), and send_request(), which POSTs it
// with "stream": true and turns the Server-Sent Events it gets back into a
// RequestRecord: arrival is the scheduled send time, the first token and
// every later one are the moments their chunks arrived, finish is when
// "data: [DONE]" arrived; output_tokens comes from the final usage chunk.
// Failures of any kind (connection, HTTP status, an error chunk, a stream cut
// off) are recorded in the record, never thrown.
#pragma once

#include "engine/workload/generator.h"
#include "engine/workload/metrics.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qllm::bench {

using BenchClock = std::chrono::steady_clock;

// An http:// server address: "http://HOST[:PORT][/PREFIX]". A trailing "/v1"
// (the base URL OpenAI clients take) and trailing slashes are dropped, so
// "http://h:8000/v1" and "http://h:8000" name the same server. IPv6 hosts are
// written in brackets. Throws qllm::Error for anything else (https:// included).
struct ServerUrl {
  std::string host;         // without brackets
  int port = 80;
  std::string prefix;       // "" or "/something", prepended to every path
  std::string text;         // "http://host:port/prefix", for messages
};
ServerUrl parse_url(std::string_view url);

enum class ApiEndpoint { Completions, Chat };
std::string_view endpoint_name(ApiEndpoint e);  // "completions", "chat"
std::string_view endpoint_path(ApiEndpoint e);  // "/v1/completions", "/v1/chat/completions"
// "completions" or "chat"; throws qllm::Error otherwise.
ApiEndpoint parse_endpoint(std::string_view name);

// GET /v1/models. Throws qllm::Error naming the URL when the server cannot be
// reached, answers with a status other than 200, or not with JSON.
nlohmann::json fetch_models(const ServerUrl& url, double timeout_s);

// The model to send: `wanted` when given, else the first id /v1/models lists.
// Throws qllm::Error when `wanted` is empty and the list is.
std::string pick_model(const nlohmann::json& models, const std::string& wanted);

// What every request of a run shares.
struct RequestSettings {
  ApiEndpoint endpoint = ApiEndpoint::Completions;
  std::string model;        // "" leaves "model" out (the server's default)
  int64_t vocab = 256;      // prompt token ids are drawn in [0, vocab)
  int64_t ls_priority = 0;  // "priority" of LS requests (vLLM: lower = more urgent)
  int64_t be_priority = 1;  // "priority" of BE requests
  uint64_t seed = 0;        // the workload's seed: prompt ids depend on (seed, id)
  double timeout_s = 600;   // per request, from its send to [DONE]
};

// The synthetic prompt of request `id`: max(1, n) ids in [0, vocab), the
// same ids `qllm run` feeds the engine for that request (workload_runner.cpp).
std::vector<int32_t> synthetic_prompt(int64_t id, int64_t n, int64_t vocab, uint64_t seed);

// "hi hi hi ..." with max(1, n) words: the chat stand-in for an n-token prompt.
std::string synthetic_words(int64_t n);

// The request body: model, prompt (token ids) or messages (one user message
// of prompt_tokens words), max_tokens, ignore_eos, temperature 0, priority,
// stream with stream_options.include_usage.
nlohmann::json request_body(const workload::WorkloadRequest& w, const RequestSettings& s);

// Reads the chunks of one streamed answer (the data payloads of its events,
// in order, each with the time it arrived):
//   - "[DONE]" ends the stream (done(), done_s());
//   - a chunk with {"error": ...} (or "object": "error") ends it with error();
//   - a chunk with a choice is a token event when it carries text (completions
//     "text", chat "delta.content"), or carries no text but neither a
//     finish_reason nor a chat "role": a chunk that only closes the stream or
//     only opens the assistant message is not a token;
//   - "usage" (the last chunk with include_usage) gives the true token counts
//     (send_request keeps only the first completion_tokens token events: a
//     server may flush held-back text, such as the bytes of an unfinished
//     UTF-8 character, in the chunk that carries the finish_reason);
//   - finish_reason "abort" or "error" is a failure.
// A payload that is not a JSON object is a failure too.
class StreamReader {
 public:
  explicit StreamReader(ApiEndpoint endpoint) : endpoint_(endpoint) {}

  // Returns false once the stream has nothing more to say ([DONE] or a
  // failure); later payloads are ignored.
  bool on_payload(std::string_view payload, double t_s);

  bool done() const { return done_; }
  double done_s() const { return done_s_; }
  const std::string& error() const { return error_; }  // "" = none
  const std::vector<double>& token_times() const { return token_times_; }
  int64_t chunks() const { return chunks_; }  // chunks with a choice
  int64_t usage_prompt_tokens() const { return usage_prompt_; }          // -1: no usage
  int64_t usage_completion_tokens() const { return usage_completion_; }  // -1: no usage
  const std::string& finish_reason() const { return finish_reason_; }

 private:
  ApiEndpoint endpoint_;
  bool done_ = false;
  double done_s_ = workload::kNoTime;
  std::string error_;
  std::vector<double> token_times_;
  int64_t chunks_ = 0;
  int64_t usage_prompt_ = -1;
  int64_t usage_completion_ = -1;
  std::string finish_reason_;
};

// The message of an error body: OpenAI's {"error": {"message"}}, or
// {"message"} / {"detail"}, else the text itself (shortened).
std::string error_message_of(std::string_view body);

// What the client saw beyond the record (kept in the run's JSON).
struct RequestTrace {
  int64_t id = 0;
  double sent_s = workload::kNoTime;  // when the request actually left (>= arrival)
  int http_status = 0;                // 0: no response
  int64_t chunks = 0;                 // stream chunks with a choice
  int64_t max_tokens = 0;             // as requested
  std::string finish_reason;          // the last one a chunk carried
};

// Sends one request now and streams its answer. `arrival_s` (the scheduled
// send time) and every time in the record are seconds after `t0`. Never
// throws for a request that fails: the record says why (finished_ok false).
workload::RequestRecord send_request(const ServerUrl& url, const workload::WorkloadRequest& w,
                                     const RequestSettings& s, BenchClock::time_point t0,
                                     RequestTrace* trace = nullptr);

}  // namespace qllm::bench
