#include "engine/bench/client.h"

#include "engine/bench/sse.h"
#include "engine/common/error.h"
#include "engine/model/synthetic_init.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <fmt/format.h>
#include <httplib.h>

namespace qllm::bench {
namespace {

using nlohmann::json;

double seconds_between(BenchClock::time_point a, BenchClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::chrono::microseconds micros(double s) {
  return std::chrono::microseconds(int64_t(std::clamp(s, 0.001, 1e7) * 1e6));
}

void set_timeouts(httplib::Client& cli, double connect_s, double read_s) {
  cli.set_connection_timeout(micros(connect_s));
  cli.set_read_timeout(micros(read_s));
  cli.set_write_timeout(micros(read_s));
}

// httplib's names of its errors are terse ("Connection", "Read").
std::string describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "could not connect";
    case httplib::Error::ConnectionTimeout: return "connecting timed out";
    case httplib::Error::Read: return "reading the response failed";
    case httplib::Error::Write: return "sending the request failed";
    case httplib::Error::Canceled: return "cancelled";
    default: return httplib::to_string(e);
  }
}

std::string shorten(std::string_view s, size_t n = 300) {
  std::string out(s.substr(0, n));
  if (s.size() > n) out += "...";
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

// The text a choice carries (empty when none) and whether it has any.
std::string_view choice_text(const json& choice, ApiEndpoint e) {
  const json* t = nullptr;
  if (e == ApiEndpoint::Completions) {
    auto it = choice.find("text");
    if (it != choice.end()) t = &*it;
  } else {
    auto d = choice.find("delta");
    if (d != choice.end() && d->is_object()) {
      auto it = d->find("content");
      if (it != d->end()) t = &*it;
    }
  }
  if (t == nullptr || !t->is_string()) return {};
  return t->get_ref<const std::string&>();
}

}  // namespace

ServerUrl parse_url(std::string_view url) {
  const std::string given(url);
  if (starts_with_ci(url, "https://"))
    fail("URL '{}': only http:// is supported", given);
  if (!starts_with_ci(url, "http://")) fail("URL '{}': expected http://HOST[:PORT][/PREFIX]", given);
  std::string_view rest = url.substr(7);
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string prefix(slash == std::string_view::npos ? std::string_view() : rest.substr(slash));
  if (authority.find_first_of("@?#") != std::string_view::npos ||
      prefix.find_first_of("?#") != std::string::npos)
    fail("URL '{}': user names, queries and fragments are not supported", given);

  ServerUrl u;
  std::string_view port_text;
  bool ipv6 = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) fail("URL '{}': unterminated '[' in the host", given);
    u.host = std::string(authority.substr(1, close - 1));
    ipv6 = true;
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') fail("URL '{}': expected ':PORT' after ']'", given);
      port_text = after.substr(1);
      if (port_text.empty()) fail("URL '{}': empty port", given);
    }
  } else {
    const size_t colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) fail("URL '{}': empty port", given);
    }
  }
  if (u.host.empty()) fail("URL '{}': no host", given);
  if (!port_text.empty()) {
    if (port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      fail("URL '{}': port '{}' is not a number", given, port_text);
    u.port = std::stoi(std::string(port_text));
    if (u.port < 1 || u.port > 65535) fail("URL '{}': port {} is out of range", given, u.port);
  }
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0) prefix.resize(prefix.size() - 3);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  u.prefix = prefix;
  u.text = fmt::format("http://{}:{}{}", ipv6 ? "[" + u.host + "]" : u.host, u.port, u.prefix);
  return u;
}

std::string_view endpoint_name(ApiEndpoint e) {
  return e == ApiEndpoint::Completions ? "completions" : "chat";
}

std::string_view endpoint_path(ApiEndpoint e) {
  return e == ApiEndpoint::Completions ? "/v1/completions" : "/v1/chat/completions";
}

ApiEndpoint parse_endpoint(std::string_view name) {
  if (name == "completions") return ApiEndpoint::Completions;
  if (name == "chat") return ApiEndpoint::Chat;
  fail("unknown endpoint '{}': expected completions or chat", name);
}

json fetch_models(const ServerUrl& url, double timeout_s) {
  httplib::Client cli(url.host, url.port);
  set_timeouts(cli, timeout_s, timeout_s);
  const std::string path = url.prefix + "/v1/models";
  auto res = cli.Get(path);
  if (!res)
    fail("cannot reach the server at {} (GET {}: {}); is it running?", url.text, path,
         describe(res.error()));
  if (res->status != 200)
    fail("the server at {} answered GET {} with HTTP {}: {}", url.text, path, res->status,
         error_message_of(res->body));
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    fail("the server at {} answered GET {} with something other than a JSON object: {}", url.text,
         path, shorten(res->body));
  return j;
}

std::string pick_model(const json& models, const std::string& wanted) {
  if (!wanted.empty()) return wanted;
  const auto data = models.find("data");
  if (data != models.end() && data->is_array())
    for (const auto& m : *data)
      if (m.is_object() && m.contains("id") && m["id"].is_string()) return m["id"].get<std::string>();
  fail("GET /v1/models lists no model: name one with --model");
}

std::vector<int32_t> synthetic_prompt(int64_t id, int64_t n, int64_t vocab, uint64_t seed) {
  QLLM_CHECK(vocab > 0);
  std::vector<int32_t> ids(size_t(std::max<int64_t>(1, n)));
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = int32_t(synth::splitmix64(synth::splitmix64(seed ^ uint64_t(id)) + i) % uint64_t(vocab));
  return ids;
}

std::string synthetic_words(int64_t n) {
  std::string s = "hi";
  for (int64_t i = 1; i < n; ++i) s += " hi";
  return s;
}

json request_body(const workload::WorkloadRequest& w, const RequestSettings& s) {
  json b = json::object();
  if (!s.model.empty()) b["model"] = s.model;
  if (s.endpoint == ApiEndpoint::Completions)
    b["prompt"] = synthetic_prompt(w.id, w.prompt_tokens, s.vocab, s.seed);
  else
    b["messages"] = json::array({{{"role", "user"}, {"content", synthetic_words(w.prompt_tokens)}}});
  b["max_tokens"] = std::max<int64_t>(1, w.max_tokens);
  b["ignore_eos"] = true;
  b["temperature"] = 0.0;
  b["priority"] = w.cls == workload::RequestClass::LS ? s.ls_priority : s.be_priority;
  b["stream"] = true;
  b["stream_options"] = {{"include_usage", true}};
  return b;
}

std::string error_message_of(std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    auto msg_of = [](const json& o) -> std::string {
      for (const char* k : {"message", "detail"}) {
        auto it = o.find(k);
        if (it != o.end()) return it->is_string() ? it->get<std::string>() : it->dump();
      }
      return {};
    };
    auto e = j.find("error");
    if (e != j.end()) {
      if (e->is_string()) return e->get<std::string>();
      if (e->is_object()) {
        std::string m = msg_of(*e);
        if (!m.empty()) return m;
      }
    }
    std::string m = msg_of(j);
    if (!m.empty()) return m;
  }
  return body.empty() ? std::string("(empty body)") : shorten(body);
}

bool StreamReader::on_payload(std::string_view payload, double t_s) {
  if (done_ || !error_.empty()) return false;
  if (SseParser::is_done(payload)) {
    done_ = true;
    done_s_ = t_s;
    if (finish_reason_ == "abort" || finish_reason_ == "error")
      error_ = fmt::format("the server ended the request with finish_reason \"{}\"", finish_reason_);
    return false;
  }
  const json j = json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error_ = fmt::format("stream chunk is not a JSON object: {}", shorten(payload));
    return false;
  }
  const auto object = j.find("object");
  if (j.contains("error") || (object != j.end() && *object == "error")) {
    error_ = fmt::format("error in stream: {}", error_message_of(payload));
    return false;
  }
  auto usage = j.find("usage");
  if (usage != j.end() && usage->is_object()) {
    auto count = [&](const char* k) -> int64_t {
      auto it = usage->find(k);
      return it != usage->end() && it->is_number_integer() ? it->get<int64_t>() : -1;
    };
    usage_prompt_ = count("prompt_tokens");
    usage_completion_ = count("completion_tokens");
  }
  auto choices = j.find("choices");
  if (choices != j.end() && choices->is_array() && !choices->empty()) {
    const json& c = choices->front();
    if (!c.is_object()) {
      error_ = fmt::format("stream chunk with a choice that is not an object: {}", shorten(payload));
      return false;
    }
    ++chunks_;
    const std::string_view text = choice_text(c, endpoint_);
    auto fr = c.find("finish_reason");
    const bool finishes = fr != c.end() && fr->is_string();
    if (finishes) finish_reason_ = fr->get<std::string>();
    bool role_only = false;
    if (endpoint_ == ApiEndpoint::Chat) {
      auto d = c.find("delta");
      role_only = d != c.end() && d->is_object() && d->contains("role");
    }
    if (!text.empty() || (!finishes && !role_only)) token_times_.push_back(t_s);
  }
  return true;
}

workload::RequestRecord send_request(const ServerUrl& url, const workload::WorkloadRequest& w,
                                     const RequestSettings& s, BenchClock::time_point t0,
                                     RequestTrace* trace) {
  workload::RequestRecord rec;
  rec.id = w.id;
  rec.cls = w.cls;
  rec.arrival_s = w.arrival_s;
  rec.prompt_tokens = w.prompt_tokens;

  httplib::Request req;
  req.method = "POST";
  req.path = url.prefix + std::string(endpoint_path(s.endpoint));
  req.body = request_body(w, s).dump();
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");

  int status = 0;
  std::string error_body;
  std::string failure;
  SseParser parser;
  StreamReader reader(s.endpoint);
  std::vector<std::string> payloads;
  const auto sent = BenchClock::now();
  const auto deadline = sent + micros(s.timeout_s);
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const auto now = BenchClock::now();
    if (status != 200) {
      if (error_body.size() < 65536) error_body.append(data, n);
      return true;
    }
    if (reader.done()) return true;  // whatever follows [DONE] is not ours to read
    payloads.clear();
    try {
      parser.feed(std::string_view(data, n), payloads);
    } catch (const Error& e) {
      failure = e.what();
      return false;
    }
    const double t = seconds_between(t0, now);
    for (const auto& p : payloads)
      if (!reader.on_payload(p, t)) break;
    if (!reader.error().empty()) return false;  // stop reading a failed stream
    if (!reader.done() && now > deadline) {
      failure = fmt::format("timed out after {} s", s.timeout_s);
      return false;
    }
    return true;
  };

  httplib::Client cli(url.host, url.port);
  set_timeouts(cli, s.timeout_s, s.timeout_s);
  auto res = cli.send(req);
  if (status == 0 && res) status = res->status;
  if (!res && failure.empty() && reader.error().empty() && !reader.done() &&
      seconds_between(sent, BenchClock::now()) >= s.timeout_s)
    failure = fmt::format("timed out after {} s ({})", s.timeout_s, describe(res.error()));

  if (trace != nullptr) {
    trace->id = w.id;
    trace->sent_s = seconds_between(t0, sent);
    trace->http_status = status;
    trace->chunks = reader.chunks();
    trace->max_tokens = w.max_tokens;
    trace->finish_reason = reader.finish_reason();
  }

  if (!failure.empty()) {
    rec.error = failure;
  } else if (status != 0 && status != 200) {
    if (error_body.empty() && res) error_body = res->body;
    rec.error = fmt::format("HTTP {}: {}", status, error_message_of(error_body));
  } else if (!reader.error().empty()) {
    rec.error = reader.error();
  } else if (!reader.done()) {
    if (!res)
      rec.error = status == 0 ? fmt::format("connection error: {} (no response)",
                                            describe(res.error()))
                              : fmt::format("connection error: {} (the stream broke off after {} chunks)",
                                            describe(res.error()), reader.chunks());
    else
      rec.error = fmt::format("the stream ended before data: [DONE] ({} chunks{})", reader.chunks(),
                              parser.pending() ? ", the last event cut off" : "");
  }
  // A transport error after [DONE] (the server closing abruptly) loses nothing.

  rec.token_times_s = reader.token_times();
  // More token events than the server says it generated: a closing chunk
  // flushed held-back text (e.g. the bytes of an unfinished UTF-8 character)
  // with its finish_reason. The first completion_tokens events are the tokens.
  if (reader.usage_completion_tokens() >= 0 &&
      int64_t(rec.token_times_s.size()) > reader.usage_completion_tokens())
    rec.token_times_s.resize(size_t(reader.usage_completion_tokens()));
  if (!rec.token_times_s.empty()) rec.first_token_s = rec.token_times_s.front();
  rec.output_tokens = reader.usage_completion_tokens() >= 0 ? reader.usage_completion_tokens()
                                                              : int64_t(rec.token_times_s.size());
  if (reader.usage_prompt_tokens() >= 0) rec.prompt_tokens = reader.usage_prompt_tokens();
  rec.finished_ok = rec.error.empty();
  if (rec.finished_ok) rec.finish_s = reader.done_s();
  return rec;
}

}  // namespace qllm::bench
