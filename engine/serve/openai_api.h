// The OpenAI-compatible request and response bodies (MODELS.md, "Serving API
// conventions"): parsing and validating a request body into a
// GenerationRequest, and building the JSON of responses, stream chunks and
// errors. Pure functions: no engine, no sockets, so every rule is unit-tested.
#pragma once

#include "device_scheduler/policy.h"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qllm::serve {

// A request the server refuses: HTTP status plus the OpenAI error object
// {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  int status = 400;
  std::string type = "invalid_request_error";  // or "not_found_error", "rate_limit_error", ...
  std::string param;                            // the offending field ("" = none)
  std::string code;                             // e.g. "model_not_found" ("" = none)
  // An empty type_ follows the status: 404 "not_found_error", 429
  // "rate_limit_error", 5xx "server_error", else "invalid_request_error".
  ApiError(int status_, std::string message, std::string param_ = {}, std::string type_ = {},
           std::string code_ = {});
};

// {"error": {"message": ..., "type": ..., "param": ... or null, "code": ... or null}}
nlohmann::json error_body(const ApiError& e);

// What the server knows when it checks a request.
struct ApiLimits {
  std::vector<std::string> model_names;  // accepted "model" values (the first is the default)
  int64_t max_model_len = 4096;          // prompt + max_tokens must fit
  int64_t vocab = 0;                     // token ids in a token-id prompt must be below this
  int64_t ls_max_priority = 0;           // priority <= this: LS, else BE
  // Defaults for fields the request leaves out (engine configuration "sampling.*").
  double default_temperature = 0.0;
  double default_top_p = 1.0;
  int64_t default_top_k = 0;
  int64_t default_max_tokens = 64;
  uint64_t default_seed = 0;
};

enum class Endpoint { Completions, ChatCompletions };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;  // as resolved (a missing "model" gives model_names[0])

  // Completions: "prompt" is a string or an array of token ids (a list of one
  // string is accepted too). Exactly one of the two is set.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;
  // Chat: "messages" as given (role/content objects), for the chat template.
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();

  // max_tokens (or max_completion_tokens for chat); nullopt when the request
  // leaves it out: the server then uses min(default_max_tokens, room left).
  std::optional<int64_t> max_tokens;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;        // (0, 1]
  int64_t top_k = 0;         // 0 or -1 in the request = off (stored as 0)
  uint64_t seed = 0;
  std::vector<std::string> stop;  // up to 4 strings, none empty
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage (only with stream)
  bool ignore_eos = false;
  int64_t priority = 0;
  sched::PriorityClass cls = sched::PriorityClass::LS;  // from priority and ls_max_priority
  bool add_generation_prompt = true;                     // chat only
};

// Parses and checks a body. Throws ApiError (status 400, or 404 with code
// "model_not_found" for an unknown model) naming the field for: a body that
// is not JSON, not an object or nested more than 64 levels deep, a field of
// the wrong type, a missing prompt/messages, an empty prompt, out-of-range
// values (temperature outside [0, 2], top_p outside (0, 1], top_k < -1,
// max_tokens < 1, n != 1, more than 4 stop strings), token ids outside the
// vocabulary, and unsupported options that change the output (n > 1,
// best_of > 1, logprobs, echo, suffix, tools).
// Unknown fields are ignored, as OpenAI-compatible servers do, and a null
// field is the same as a missing one. Chat content given as text parts is
// joined with "\n" (as vLLM); max_completion_tokens wins over max_tokens.
// The model is checked first, so an unknown model is a 404 whatever else is
// wrong. Does not check lengths against max_model_len: the prompt is
// tokenized later (check_length).
GenerationRequest parse_request(Endpoint endpoint, std::string_view body, const ApiLimits& limits);

// The class of a vLLM-style priority value: <= ls_max_priority is LS.
sched::PriorityClass class_of_priority(int64_t priority, int64_t ls_max_priority);

// With the prompt's length known: resolves max_tokens (the request's, or
// min(default_max_tokens, max_model_len - prompt_tokens)) and throws ApiError
// 400 (param "messages" / "prompt" or "max_tokens") when prompt_tokens +
// max_tokens exceeds max_model_len, naming all three numbers.
int64_t check_length(const GenerationRequest& r, int64_t prompt_tokens, const ApiLimits& limits);

// OpenAI "finish_reason": "stop" or "length" (nullopt: still running).
using FinishReason = std::optional<std::string>;

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};
nlohmann::json usage_json(const Usage& u);  // {"prompt_tokens", "completion_tokens", "total_tokens"}

// Whole (non-streamed) responses.
//   completions: {"id", "object": "text_completion", "created", "model",
//                 "choices": [{"index": 0, "text", "logprobs": null, "finish_reason"}], "usage"}
//   chat:        {"id", "object": "chat.completion", "created", "model",
//                 "choices": [{"index": 0, "message": {"role": "assistant", "content"},
//                              "logprobs": null, "finish_reason"}], "usage"}
nlohmann::json completion_response(Endpoint endpoint, std::string_view id, int64_t created,
                                   std::string_view model, std::string_view text,
                                   const FinishReason& finish, const Usage& usage);

// One stream chunk.
//   completions: {"id", "object": "text_completion", "created", "model",
//                 "choices": [{"index": 0, "text", "logprobs": null, "finish_reason"}]}
//   chat:        {"id", "object": "chat.completion.chunk", "created", "model",
//                 "choices": [{"index": 0, "delta": {...}, "logprobs": null, "finish_reason"}]}
// For chat, `first` puts "role": "assistant" in the delta; the delta has
// "content" unless the text is empty and the chunk only ends the stream.
nlohmann::json stream_chunk(Endpoint endpoint, std::string_view id, int64_t created,
                            std::string_view model, std::string_view text, const FinishReason& finish,
                            bool first);

// The last chunk when include_usage: "choices": [] and "usage".
nlohmann::json usage_chunk(Endpoint endpoint, std::string_view id, int64_t created,
                           std::string_view model, const Usage& usage);

// "data: <json>\n\n" and "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& j);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// GET /v1/models: {"object": "list", "data": [{"id", "object": "model",
// "created", "owned_by": "qllm", "max_model_len"}]}
nlohmann::json models_response(const std::vector<std::string>& names, int64_t created,
                               int64_t max_model_len);

// Stop strings over streamed text. Text is fed as it is decoded; what can be
// sent is returned, holding back any tail that could still be the start of a
// stop string. When a stop string completes, the text before it is returned
// and stopped() becomes true (the stop string itself is never sent). Of
// several stops, the one that completes first in the text wins (the longer
// one on a tie), however the text was split into feeds.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string feed(std::string_view text);
  std::string flush();  // at the end: whatever was held back
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace qllm::serve
