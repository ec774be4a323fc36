#include "engine/serve/openai_api.h"

#include "engine/common/error.h"
#include "engine/common/suggest.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <limits>

namespace qllm::serve {

using nlohmann::json;

ApiError::ApiError(int status_, std::string message, std::string param_, std::string type_,
                   std::string code_)
    : std::runtime_error(std::move(message)),
      status(status_),
      param(std::move(param_)),
      code(std::move(code_)) {
  // An empty type follows the status, so callers only name the unusual ones.
  if (!type_.empty())
    type = std::move(type_);
  else if (status == 404)
    type = "not_found_error";
  else if (status == 429)
    type = "rate_limit_error";
  else if (status >= 500)
    type = "server_error";
}

json error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", std::move(err)}};
}

namespace {

// Every dump goes through here: generated text may hold invalid UTF-8 (a
// token boundary inside a character), which must not throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// A value quoted in an error message, cut short so a huge field is not echoed.
std::string shown(const json& v) {
  std::string s = dump(v);
  constexpr size_t kMax = 60;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}

template <typename... Args>
[[noreturn]] void bad(std::string param, fmt::format_string<Args...> f, Args&&... args) {
  throw ApiError(400, fmt::format(f, std::forward<Args>(args)...), std::move(param));
}

// The field, or nullptr when absent or null: OpenAI-compatible servers treat
// an explicit null like a missing field.
const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// A JSON integer in [lo, hi]; `expected` completes "'name' must be ...".
int64_t int_in(const json& v, const char* name, int64_t lo, int64_t hi, std::string_view expected) {
  bool ok = false;
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    ok = hi >= 0 && u <= static_cast<uint64_t>(hi);
    x = ok ? static_cast<int64_t>(u) : 0;
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
    ok = true;
  }
  if (!ok || x < lo || x > hi) bad(name, "'{}' must be {}, got {}", name, expected, shown(v));
  return x;
}

double number_in(const json& v, const char* name, double lo, double hi, bool lo_open,
                 std::string_view expected) {
  const bool ok = v.is_number() && (lo_open ? v.get<double>() > lo : v.get<double>() >= lo) &&
                  v.get<double>() <= hi;
  if (!ok) bad(name, "'{}' must be {}, got {}", name, expected, shown(v));
  return v.get<double>();
}

bool boolean(const json& v, const char* name) {
  if (!v.is_boolean()) bad(name, "'{}' must be true or false, got {}", name, shown(v));
  return v.get<bool>();
}

constexpr int kMaxDepth = 64;

// True when v has more than `levels` levels of arrays/objects (recursion is
// bounded by `levels`).
bool deeper_than(const json& v, int levels) {
  if (!v.is_structured()) return false;
  if (levels == 0) return true;
  for (const auto& x : v)
    if (deeper_than(x, levels - 1)) return true;
  return false;
}

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

std::string resolve_model(const json& body, const ApiLimits& limits) {
  QLLM_CHECK_MSG(!limits.model_names.empty(), "ApiLimits.model_names is empty");
  const json* m = field(body, "model");
  if (!m) return limits.model_names.front();
  if (!m->is_string()) bad("model", "'model' must be a string, got {}", shown(*m));
  const auto name = m->get<std::string>();
  const auto& names = limits.model_names;
  if (std::find(names.begin(), names.end(), name) != names.end()) return name;
  std::string msg = fmt::format("The model '{}' does not exist; served models: {}", name,
                                fmt::join(names, ", "));
  if (auto near = closest_match(name, names); !near.empty())
    msg += fmt::format(" (did you mean '{}'?)", near);
  throw ApiError(404, std::move(msg), "model", "not_found_error", "model_not_found");
}

// A token-id list: each an integer in [0, vocab) (vocab 0: unknown, only the
// int32 range is checked).
std::vector<int32_t> token_ids(const json& arr, const ApiLimits& limits) {
  const int64_t hi = limits.vocab > 0 ? limits.vocab - 1 : std::numeric_limits<int32_t>::max();
  const std::string expected = fmt::format("an integer in [0, {}]", hi);
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const auto& v = arr[i];
    int64_t x = -1;
    if (v.is_number_unsigned())
      x = v.get<uint64_t>() <= static_cast<uint64_t>(hi) ? v.get<int64_t>() : -1;
    else if (v.is_number_integer())
      x = v.get<int64_t>();
    if (x < 0 || x > hi)
      bad("prompt", "'prompt[{}]' must be a token id, {}, got {}", i, expected, shown(v));
    ids.push_back(static_cast<int32_t>(x));
  }
  return ids;
}

void parse_prompt(const json& body, const ApiLimits& limits, GenerationRequest& r) {
  constexpr std::string_view kForms =
      "a string, a list of one string, or a list of token ids";
  const json* p = field(body, "prompt");
  if (!p) bad("prompt", "'prompt' is required: {}", kForms);
  if (p->is_string()) {
    if (p->get_ref<const std::string&>().empty()) bad("prompt", "'prompt' must not be empty");
    r.prompt_text = p->get<std::string>();
    return;
  }
  if (!p->is_array()) bad("prompt", "'prompt' must be {}, got {}", kForms, shown(*p));
  if (p->empty()) bad("prompt", "'prompt' must not be empty");
  const json& first = p->front();
  // A list of prompts (strings or token lists) is a batch: one request per
  // prompt is the only form supported.
  if (first.is_string() || first.is_array()) {
    if (p->size() > 1)
      bad("prompt",
          "'prompt' holds {} prompts; batch prompts are not supported, send one per request",
          p->size());
    if (first.is_string()) {
      if (first.get_ref<const std::string&>().empty()) bad("prompt", "'prompt' must not be empty");
      r.prompt_text = first.get<std::string>();
      return;
    }
    if (first.empty()) bad("prompt", "'prompt' must not be empty");
    r.prompt_ids = token_ids(first, limits);
    return;
  }
  r.prompt_ids = token_ids(*p, limits);
}

// Content as one string: a string, or a list of {"type": "text", "text"}
// parts joined with "\n" (as vLLM does for text-only content).
std::string message_content(const json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array())
    bad(where, "'{}' must be a string or an array of text parts, got {}", where, shown(c));
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const auto& part = c[i];
    const std::string pw = fmt::format("{}[{}]", where, i);
    if (!part.is_object())
      bad(where, "'{}' must be an object {{\"type\": \"text\", \"text\": ...}}, got {}", pw,
          shown(part));
    const auto type = part.find("type");
    if (type == part.end() || !type->is_string() || *type != "text")
      bad(where, "'{}.type' must be \"text\" (only text content is supported), got {}", pw,
          type == part.end() ? std::string("nothing") : shown(*type));
    const auto text = part.find("text");
    if (text == part.end() || !text->is_string())
      bad(where, "'{}.text' must be a string, got {}", pw,
          text == part.end() ? std::string("nothing") : shown(*text));
    if (i > 0) out += '\n';
    out += text->get_ref<const std::string&>();
  }
  return out;
}

void parse_messages(const json& body, GenerationRequest& r) {
  static constexpr std::array<std::string_view, 4> kRoles = {"system", "user", "assistant", "tool"};
  const json* m = field(body, "messages");
  if (!m) bad("messages", "'messages' is required: a non-empty array of {{role, content}} objects");
  if (!m->is_array() || m->empty())
    bad("messages", "'messages' must be a non-empty array of {{role, content}} objects, got {}",
        shown(*m));
  r.messages = nlohmann::ordered_json::array();
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!msg.is_object()) bad(where, "'{}' must be an object, got {}", where, shown(msg));
    const auto role = msg.find("role");
    if (role == msg.end() || !role->is_string() ||
        std::find(kRoles.begin(), kRoles.end(), role->get_ref<const std::string&>()) ==
            kRoles.end())
      bad(where + ".role", "'{}.role' must be one of system, user, assistant, tool; got {}", where,
          role == msg.end() ? std::string("nothing") : shown(*role));
    const auto content = msg.find("content");
    if (content == msg.end())
      bad(where + ".content", "'{}.content' is required: a string or an array of text parts",
          where);
    nlohmann::ordered_json out;
    out["role"] = role->get<std::string>();
    out["content"] = message_content(*content, where + ".content");
    // Other keys (name, tool_call_id, ...) pass through for the chat template.
    for (const auto& [k, v] : msg.items())
      if (k != "role" && k != "content") out[k] = nlohmann::ordered_json::parse(dump(v));
    r.messages.push_back(std::move(out));
  }
}

std::vector<std::string> parse_stop(const json& body) {
  constexpr std::string_view kExpected = "a string or an array of at most 4 non-empty strings";
  const json* s = field(body, "stop");
  if (!s) return {};
  std::vector<std::string> out;
  if (s->is_string()) {
    out.push_back(s->get<std::string>());
  } else if (s->is_array() && s->size() <= 4) {
    for (const auto& v : *s) {
      if (!v.is_string()) bad("stop", "'stop' must be {}, got {}", kExpected, shown(*s));
      out.push_back(v.get<std::string>());
    }
  } else {
    bad("stop", "'stop' must be {}, got {}", kExpected, shown(*s));
  }
  for (const auto& x : out)
    if (x.empty()) bad("stop", "'stop' must be {}, got an empty string", kExpected);
  return out;
}

// True for a value that asks for something: not null, false, "" or [].
bool is_set(const json& v) {
  return !(v.is_null() || (v.is_boolean() && !v.get<bool>()) || (v.is_array() && v.empty()) ||
           (v.is_string() && v.get_ref<const std::string&>().empty()));
}

// Options that would change what is returned: refusing them is better than
// silently answering something else.
void refuse_unsupported(const json& body) {
  for (const char* name : {"logprobs", "top_logprobs", "echo", "suffix", "tools", "functions"}) {
    const auto it = body.find(name);
    if (it == body.end() || !is_set(*it)) continue;
    if (std::string_view(name) == "top_logprobs" && it->is_number_integer() &&
        it->get<int64_t>() == 0)
      continue;
    bad(name, "'{}' is not supported by this server, got {}", name, shown(*it));
  }
  if (const json* n = field(body, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1))
    bad("n", "'n' must be 1 (several choices per request are not supported), got {}", shown(*n));
  if (const json* b = field(body, "best_of")) {
    const int64_t best_of = int_in(*b, "best_of", 1, kI64Max, "an integer >= 1");
    if (best_of > 1)
      bad("best_of", "'best_of' > 1 is not supported by this server, got {}", best_of);
  }
}

}  // namespace

sched::PriorityClass class_of_priority(int64_t priority, int64_t ls_max_priority) {
  return priority <= ls_max_priority ? sched::PriorityClass::LS : sched::PriorityClass::BE;
}

GenerationRequest parse_request(Endpoint endpoint, std::string_view body_text,
                                const ApiLimits& limits) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::parse_error& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    std::string what = e.what();
    if (const auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    throw ApiError(400, fmt::format("request body is not valid JSON: {}", what));
  }
  // Dumping and copying JSON recurse; a bound here keeps a hostile body from
  // exhausting the stack later (error messages, the chat template, logs).
  if (deeper_than(body, kMaxDepth))
    throw ApiError(400, fmt::format("request body is nested more than {} levels deep", kMaxDepth));
  if (!body.is_object())
    throw ApiError(400, fmt::format("request body must be a JSON object, got {}", shown(body)));

  GenerationRequest r;
  r.endpoint = endpoint;
  r.model = resolve_model(body, limits);
  refuse_unsupported(body);

  if (endpoint == Endpoint::Completions) {
    parse_prompt(body, limits, r);
  } else {
    parse_messages(body, r);
    if (const json* v = field(body, "add_generation_prompt"))
      r.add_generation_prompt = boolean(*v, "add_generation_prompt");
  }

  // Chat: max_completion_tokens replaces the deprecated max_tokens and wins
  // when both are given (as vLLM); both are checked.
  constexpr std::string_view kMaxExpected = "an integer >= 1";
  if (const json* v = field(body, "max_tokens"))
    r.max_tokens = int_in(*v, "max_tokens", 1, kI64Max, kMaxExpected);
  if (endpoint == Endpoint::ChatCompletions)
    if (const json* v = field(body, "max_completion_tokens"))
      r.max_tokens = int_in(*v, "max_completion_tokens", 1, kI64Max, kMaxExpected);

  r.temperature = limits.default_temperature;
  if (const json* v = field(body, "temperature"))
    r.temperature = number_in(*v, "temperature", 0.0, 2.0, false, "a number in [0, 2]");
  r.top_p = limits.default_top_p;
  if (const json* v = field(body, "top_p"))
    r.top_p = number_in(*v, "top_p", 0.0, 1.0, true, "a number in (0, 1]");
  r.top_k = limits.default_top_k;
  if (const json* v = field(body, "top_k"))
    r.top_k = std::max<int64_t>(
        0, int_in(*v, "top_k", -1, kI64Max, "-1 or 0 (off) or an integer >= 1"));
  r.seed = limits.default_seed;
  if (const json* v = field(body, "seed")) {
    if (v->is_number_unsigned())
      r.seed = v->get<uint64_t>();
    else
      r.seed = static_cast<uint64_t>(int_in(*v, "seed", 0, kI64Max, "an integer >= 0"));
  }
  r.stop = parse_stop(body);

  if (const json* v = field(body, "stream")) r.stream = boolean(*v, "stream");
  if (const json* so = field(body, "stream_options")) {
    if (!r.stream)
      bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (!so->is_object())
      bad("stream_options", "'stream_options' must be an object, got {}", shown(*so));
    if (const json* iu = field(*so, "include_usage"))
      r.include_usage = boolean(*iu, "stream_options.include_usage");
  }
  if (const json* v = field(body, "ignore_eos")) r.ignore_eos = boolean(*v, "ignore_eos");
  if (const json* v = field(body, "priority"))
    r.priority = int_in(*v, "priority", std::numeric_limits<int64_t>::min(), kI64Max, "an integer");
  r.cls = class_of_priority(r.priority, limits.ls_max_priority);
  return r;
}

int64_t check_length(const GenerationRequest& r, int64_t prompt_tokens, const ApiLimits& limits) {
  QLLM_CHECK(prompt_tokens >= 0);
  const int64_t max_len = limits.max_model_len;
  const char* what = r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt";
  // The phrase "maximum context length" is what client libraries match on to
  // recognise a context-window error, as OpenAI and vLLM word it.
  if (prompt_tokens >= max_len)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens, but '{}' takes "
                               "{} tokens, leaving no room for 'max_tokens' ({}); '{}' must be "
                               "at most {} tokens",
                               max_len, what, prompt_tokens,
                               r.max_tokens.value_or(limits.default_max_tokens), what,
                               max_len - 1),
                   what);
  const int64_t room = max_len - prompt_tokens;
  if (!r.max_tokens) return std::min(limits.default_max_tokens, room);
  if (*r.max_tokens > room)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens, but '{}' takes "
                               "{} tokens and 'max_tokens' asks for {}; 'max_tokens' must be at "
                               "most {} for this {}",
                               max_len, what, prompt_tokens, *r.max_tokens, room, what),
                   "max_tokens");
  return *r.max_tokens;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

namespace {

json finish_json(const FinishReason& f) { return f ? json(*f) : json(nullptr); }

json envelope(std::string_view object, std::string_view id, int64_t created,
              std::string_view model) {
  return {{"id", id}, {"object", object}, {"created", created}, {"model", model}};
}

}  // namespace

json completion_response(Endpoint endpoint, std::string_view id, int64_t created,
                         std::string_view model, std::string_view text, const FinishReason& finish,
                         const Usage& usage) {
  const bool chat = endpoint == Endpoint::ChatCompletions;
  json j = envelope(chat ? "chat.completion" : "text_completion", id, created, model);
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_json(finish)}};
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  j["choices"] = json::array({std::move(choice)});
  j["usage"] = usage_json(usage);
  return j;
}

json stream_chunk(Endpoint endpoint, std::string_view id, int64_t created, std::string_view model,
                  std::string_view text, const FinishReason& finish, bool first) {
  const bool chat = endpoint == Endpoint::ChatCompletions;
  json j = envelope(chat ? "chat.completion.chunk" : "text_completion", id, created, model);
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_json(finish)}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || !finish) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  j["choices"] = json::array({std::move(choice)});
  return j;
}

json usage_chunk(Endpoint endpoint, std::string_view id, int64_t created, std::string_view model,
                 const Usage& usage) {
  const bool chat = endpoint == Endpoint::ChatCompletions;
  json j = envelope(chat ? "chat.completion.chunk" : "text_completion", id, created, model);
  j["choices"] = json::array();
  j["usage"] = usage_json(usage);
  return j;
}

std::string sse_event(const json& j) { return "data: " + dump(j) + "\n\n"; }

json models_response(const std::vector<std::string>& names, int64_t created,
                     int64_t max_model_len) {
  json data = json::array();
  for (const auto& n : names)
    data.push_back({{"id", n},
                    {"object", "model"},
                    {"created", created},
                    {"owned_by", "qllm"},
                    {"max_model_len", max_model_len}});
  return {{"object", "list"}, {"data", std::move(data)}};
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  // An empty stop string would match before any text: ignore it.
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopMatcher::feed(std::string_view text) {
  if (stopped_) return {};
  held_ += text;
  // The stop that completes first wins (ties: the longer one, which starts
  // earlier), so the result does not depend on how the text was split into
  // feeds. Only held_ can contain a stop: everything sent earlier was not the
  // start of one.
  size_t best_end = std::string::npos, best_pos = 0;
  for (const auto& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (end < best_end || (end == best_end && pos < best_pos)) {
      best_end = end;
      best_pos = pos;
    }
  }
  if (best_end != std::string::npos) {
    std::string out = held_.substr(0, best_pos);
    held_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t k = std::min(held_.size(), s.size() - 1); k > keep; --k) {
      if (std::string_view(held_).substr(held_.size() - k) == std::string_view(s).substr(0, k)) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return stopped_ ? std::string() : out;
}

}  // namespace qllm::serve
