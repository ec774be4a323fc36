#include "engine/serve/server.h"

#include "engine/common/error.h"
#include "engine/core/engine_setup.h"
#include "engine/cpu/ops.h"
#include "engine/gpu/dispatcher.h"
#include "engine/model/builtin.h"
#include "engine/model/checkpoint.h"
#include "engine/serve/async_engine.h"
#include "engine/serve/metrics.h"
#include "engine/serve/openai_api.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "profiling/nvtx.h"
#include "profiling/trace_export.h"

#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <optional>
#include <sys/socket.h>
#include <thread>

namespace qllm::serve {
namespace {

using json = nlohmann::json;
constexpr const char* kJson = "application/json";

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e).dump(), kJson);
}

std::string finish_reason(Finish f) {
  switch (f) {
    case Finish::Stop: return "stop";
    case Finish::Length: return "length";
    case Finish::Cancelled: return "abort";
    case Finish::None: break;
  }
  return "";
}

// Decodes one request's tokens into text and applies its stop strings.
struct TextState {
  StreamDecoder decoder;
  StopMatcher matcher;
  int64_t completion_tokens = 0;
  TextState(const Tokenizer& tok, std::vector<std::string> stops)
      : decoder(tok), matcher(std::move(stops)) {}
  // Text to send for a token; "" while a character or a possible stop
  // string is incomplete.
  std::string token(int32_t id) {
    ++completion_tokens;
    return matcher.stopped() ? std::string() : matcher.feed(decoder.push(id));
  }
  std::string finish() {
    if (matcher.stopped()) return {};
    std::string s = matcher.feed(decoder.flush());
    return matcher.stopped() ? s : s + matcher.flush();
  }
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const EngineConfig& cfg, bool verbose);
  ~ServerImpl() override;
  int start() override;
  void shutdown(double timeout_s) override;
  void wait() override;
  const std::string& model_name() const override { return name_; }
  void inject_engine_failure(const std::string& why) override { engine_->inject_failure(why); }

 private:
  void routes();
  void generate(const httplib::Request& req, httplib::Response& res, Endpoint ep);
  std::vector<int32_t> prompt_ids(const GenerationRequest& r) const;
  void note(const std::string& s) const {
    if (verbose_) fmt::print(stderr, "{}\n", s);
  }

  EngineConfig cfg_;
  bool verbose_;
  std::string name_;
  std::optional<Tokenizer> tok_;
  std::optional<ChatTemplate> chat_;
  TokenizerConfig tok_cfg_;
  std::string dispatcher_;                // cpu or host
  std::unique_ptr<Backend> backend_;  // outlives engine_ (declared before it)
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<AsyncEngine> engine_;
  std::vector<int32_t> stop_ids_;
  ApiLimits limits_;
  int64_t created_ = 0;

  httplib::Server http_;
  std::thread listener_;
  int listen_fd_ = -1;
  std::atomic<int64_t> active_{0};  // generation requests being served
  std::atomic<bool> closing_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, shutting_down_ = false;
};

ServerImpl::ServerImpl(const EngineConfig& cfg, bool verbose) : cfg_(cfg), verbose_(verbose) {
  prof::Range range("serve: load");
  // Refuses an unavailable dispatcher before anything is loaded.
  const gpu::DispatcherChoice choice = gpu::choose_dispatcher(cfg_);
  cpu::set_num_threads(int(cfg_.cpu_threads));

  const auto dir = resolve_model_path(cfg_.model_path, verbose_);
  CheckpointOptions copts;
  copts.progress = verbose_;
  const auto ck = Checkpoint::open(dir, copts);
  const auto& d = ck.desc();
  tok_.emplace(Tokenizer::from_file(dir));
  if (std::filesystem::exists(dir / "tokenizer_config.json")) {
    tok_cfg_ = load_tokenizer_config(dir / "tokenizer_config.json");
    if (!tok_cfg_.chat_template.empty()) chat_.emplace(tok_cfg_.chat_template);
  }
  gpu::Dispatch dispatch = gpu::make_dispatch(cfg_, ck, choice, verbose_);
  dispatcher_ = dispatch.choice.name;  // auto may have fallen back to cpu
  backend_ = std::move(dispatch.backend);
  const EngineLimits lim = dispatch.limits;
  note(fmt::format("dispatcher {} ({}): {}", dispatch.choice.name, dispatch.choice.reason, dispatch.detail));
  for (int id : d.stop_token_ids()) stop_ids_.push_back(id);

  name_ = cfg_.server_served_model_name;
  if (name_.empty()) {
    name_ = cfg_.model_path.rfind("builtin:", 0) == 0 ? cfg_.model_path.substr(8)
                                                        : dir.filename().string();
    if (name_.empty()) name_ = dir.parent_path().filename().string();
  }
  limits_.model_names = {name_};
  limits_.max_model_len = max_sequence_length(cfg_, d, lim);
  limits_.vocab = d.vocab;
  limits_.ls_max_priority = cfg_.server_ls_max_priority;
  limits_.default_temperature = cfg_.sampling_temperature;
  limits_.default_top_p = cfg_.sampling_top_p;
  limits_.default_top_k = cfg_.sampling_top_k;
  limits_.default_max_tokens = cfg_.sampling_max_tokens;
  limits_.default_seed = uint64_t(cfg_.sampling_seed);
  created_ = int64_t(std::time(nullptr));

  metrics_ = std::make_shared<Metrics>(name_);
  engine_ = std::make_unique<AsyncEngine>(*backend_, lim, metrics_);
  note(fmt::format("model {} ({}, {} layers, {} experts, top-{}), served as '{}'; {} LS + {} BE slots, "
                   "policy {}, {} KV blocks of {}, max_model_len {}",
                   dir.string(), d.architecture, d.layers, d.num_experts, d.top_k, name_, lim.ls_slots,
                   lim.be_slots, cfg_.scheduler_policy, lim.kv_blocks, lim.block_size,
                   limits_.max_model_len));
  routes();
}

ServerImpl::~ServerImpl() {
  shutdown(0);
  wait();
}

std::vector<int32_t> ServerImpl::prompt_ids(const GenerationRequest& r) const {
  std::vector<int32_t> ids;
  if (r.endpoint == Endpoint::ChatCompletions) {
    if (!chat_)
      throw ApiError(400, fmt::format("model '{}' has no chat template (tokenizer_config.json); use "
                                      "/v1/completions", name_),
                     "messages");
    try {
      const auto ctx = chat_template_context(tok_cfg_, r.messages, r.add_generation_prompt,
                                             nlohmann::ordered_json::object());
      ids = tok_->encode(chat_->render(ctx), /*add_special=*/false);
    } catch (const ChatTemplateError& e) {
      throw ApiError(400, fmt::format("the chat template refused the messages: {}", e.detail()), "messages");
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
  } else if (r.prompt_text) {
    ids = tok_->encode(*r.prompt_text, /*add_special=*/true);
  } else {
    ids = r.prompt_ids;
  }
  if (ids.empty())
    throw ApiError(400, "the prompt is empty after tokenization",
                   r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt");
  return ids;
}

void ServerImpl::generate(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
  if (closing_.load()) {
    send_error(res, ApiError(503, "the server is shutting down", "", "service_unavailable"));
    return;
  }
  if (!engine_->healthy()) {
    send_error(res, ApiError(503, "the engine has failed: " + engine_->failure(), "", "service_unavailable"));
    return;
  }
  // Admission: at most server.max_concurrent_requests at once.
  if (active_.fetch_add(1) >= cfg_.server_max_concurrent_requests) {
    --active_;
    send_error(res, ApiError(429, fmt::format("too many concurrent requests (the limit is {}); retry later",
                                              cfg_.server_max_concurrent_requests),
                             "", "rate_limit_error"));
    return;
  }
  struct Release {  // gives the admission back unless a stream took it over
    std::atomic<int64_t>* n;
    ~Release() {
      if (n) --*n;
    }
  } release{&active_};

  GenerationRequest r;
  Request er;
  std::shared_ptr<RequestStream> stream;
  try {
    r = parse_request(ep, req.body, limits_);
    er.prompt = prompt_ids(r);
    er.max_tokens = int(check_length(r, int64_t(er.prompt.size()), limits_));
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }
  er.cls = r.cls;
  er.sampling.temperature = r.temperature;
  er.sampling.top_p = r.top_p;
  er.sampling.top_k = int(r.top_k);
  er.sampling.seed = r.seed;
  if (!r.ignore_eos) er.stop_ids = stop_ids_;
  const int64_t prompt_tokens = int64_t(er.prompt.size());
  try {
    stream = engine_->submit(std::move(er));
  } catch (const Error& e) {
    send_error(res, ApiError(503, e.what(), "", "service_unavailable"));
    return;
  }
  const std::string id = fmt::format("{}-{}", ep == Endpoint::ChatCompletions ? "chatcmpl" : "cmpl", stream->id());
  auto text = std::make_shared<TextState>(*tok_, r.stop);

  if (!r.stream) {  // whole response: wait for the end
    std::string out;
    std::vector<StreamEvent> evs;
    for (bool end = false; !end;) {
      evs.clear();
      stream->wait(evs, std::chrono::milliseconds(100));
      for (const auto& ev : evs) {
        if (!ev.error.empty()) {
          send_error(res, ApiError(500, ev.error, "", "internal_error"));
          return;
        }
        if (ev.token >= 0) out += text->token(ev.token);
        if (ev.end() || text->matcher.stopped()) {
          out += text->finish();
          FinishReason fr = text->matcher.stopped() ? "stop" : finish_reason(ev.finish);
          if (text->matcher.stopped() && !ev.end()) engine_->cancel(stream->id());
          res.set_content(completion_response(ep, id, created_, name_, out, fr,
                                              {prompt_tokens, text->completion_tokens})
                              .dump(-1, ' ', false, json::error_handler_t::replace),
                          kJson);
          end = true;
          break;
        }
      }
    }
    return;
  }

  // Streaming: one chunk per token (text may be empty while a character or a
  // stop string is incomplete), then a final chunk with the finish reason, the
  // usage chunk if asked, and [DONE]. The content provider runs after this
  // handler returns, on the same connection thread.
  release.n = nullptr;  // the stream's releaser gives the admission back
  struct StreamState {
    bool first = true, finished = false;
  };
  auto st = std::make_shared<StreamState>();
  const bool usage = r.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, stream, text, st, id, ep, usage, prompt_tokens](size_t, httplib::DataSink& sink) {
        std::vector<StreamEvent> evs;
        stream->wait(evs, std::chrono::milliseconds(50));
        auto send = [&](const json& j) {
          const std::string s = sse_event(j);
          return sink.write(s.data(), s.size());
        };
        for (const auto& ev : evs) {
          if (!ev.error.empty()) {
            st->finished = true;
            send({{"error", {{"message", ev.error}, {"type", "internal_error"}, {"param", nullptr},
                             {"code", nullptr}}}});
            sink.write(kSseDone.data(), kSseDone.size());
            sink.done();
            return true;
          }
          const bool stop_str_before = text->matcher.stopped();
          std::string piece = ev.token >= 0 ? text->token(ev.token) : std::string();
          const bool stop_str = !stop_str_before && text->matcher.stopped();
          if (ev.token >= 0 && !stop_str_before &&
              !send(stream_chunk(ep, id, created_, name_, piece, std::nullopt, st->first)))
            return false;  // the client went away: the releaser cancels
          st->first = false;
          if (ev.end() || stop_str) {
            if (stop_str && !ev.end()) engine_->cancel(stream->id());
            const FinishReason fr = stop_str || text->matcher.stopped() ? "stop" : finish_reason(ev.finish);
            st->finished = true;
            if (!send(stream_chunk(ep, id, created_, name_, text->finish(), fr, false))) return false;
            if (usage && !send(usage_chunk(ep, id, created_, name_, {prompt_tokens, text->completion_tokens})))
              return false;
            if (!sink.write(kSseDone.data(), kSseDone.size())) return false;
            sink.done();
            return true;
          }
        }
        return true;
      },
      [this, stream, st](bool) {
        if (!st->finished) engine_->cancel(stream->id());  // disconnect mid-stream
        --active_;
      });
}

void ServerImpl::routes() {
  http_.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& s) {
    generate(q, s, Endpoint::Completions);
  });
  http_.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& s) {
    generate(q, s, Endpoint::ChatCompletions);
  });
  http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& s) {
    s.set_content(models_response(limits_.model_names, created_, limits_.max_model_len).dump(), kJson);
  });
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& s) {
    if (engine_->healthy()) {
      s.set_content("{}", kJson);
    } else {
      send_error(s, ApiError(503, "the engine has failed: " + engine_->failure(), "", "service_unavailable"));
    }
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& s) {
    s.set_content(metrics_->render(engine_->gauges()), "text/plain; version=0.0.4; charset=utf-8");
  });
  http_.Post("/tokenize", [this](const httplib::Request& q, httplib::Response& s) {
    try {
      const bool chat = q.body.find("\"messages\"") != std::string::npos;
      const auto r = parse_request(chat ? Endpoint::ChatCompletions : Endpoint::Completions, q.body, limits_);
      const auto ids = prompt_ids(r);
      s.set_content(json{{"tokens", ids}, {"count", ids.size()}, {"max_model_len", limits_.max_model_len}}.dump(),
                    kJson);
    } catch (const ApiError& e) {
      send_error(s, e);
    }
  });
  http_.set_error_handler([](const httplib::Request& q, httplib::Response& s) {
    if (!s.body.empty()) return;  // a handler already wrote an error body
    const std::string msg = s.status == 404 ? fmt::format("no route {} {}", q.method, q.path)
                            : s.status == 413 ? std::string("the request body is too large")
                                              : fmt::format("HTTP {}", s.status);
    s.set_content(error_body(ApiError(s.status, msg, "", s.status == 404 ? "not_found_error" : "")).dump(),
                  kJson);
  });
  http_.set_exception_handler([](const httplib::Request&, httplib::Response& s, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(s, ApiError(500, what, "", "internal_error"));
  });
  http_.set_payload_max_length(size_t(64) << 20);
  http_.set_keep_alive_timeout(5);
  http_.set_read_timeout(30);
  // One thread per connection up to the admission limit (plus room for
  // /metrics, /health and refused requests): a streaming request holds its
  // thread until it ends.
  const size_t threads = size_t(cfg_.server_max_concurrent_requests) + 16;
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  //
  // cpp-httplib listens with a backlog of 5: a burst of clients overflows the
  // accept queue and their connections are reset. Remember the listening
  // socket so start() can listen again with the system's maximum.
  // Only SO_REUSEADDR: cpp-httplib's default also sets SO_REUSEPORT, which
  // lets a second server bind the same port silently and share its clients.
  http_.set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd_ = sock;
  });
}

int ServerImpl::start() {
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server
  int port = int(cfg_.server_port);
  if (port == 0) {
    port = http_.bind_to_any_port(cfg_.server_host);
    if (port < 0) fail("cannot bind {} (any port)", cfg_.server_host);
  } else if (!http_.bind_to_port(cfg_.server_host, port)) {
    fail("cannot bind {}:{} (in use, or not an address of this machine)", cfg_.server_host, port);
  }
  if (listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);  // Linux: updates the backlog
  listener_ = std::thread([this] { http_.listen_after_bind(); });
  note(fmt::format("listening on http://{}:{}", cfg_.server_host, port));
  return port;
}

void ServerImpl::shutdown(double timeout_s) {
  {
    std::lock_guard lk(mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  closing_ = true;  // new generation requests get 503
  note(fmt::format("shutting down: {} request(s) in flight get up to {:.1f} s", engine_->in_flight(), timeout_s));
  engine_->stop(timeout_s);  // finishes or cancels everything in flight
  // Let the streams write their last chunks before the sockets close.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (active_.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  http_.stop();
  if (listener_.joinable()) listener_.join();
  if (!cfg_.profiling_trace_path.empty()) {
    try {
      const auto snap = engine_->trace_snapshot();
      trace::TraceInfo info;
      info.dispatcher = dispatcher_;
      info.policy = cfg_.scheduler_policy;
      info.ls_slots = int(cfg_.scheduler_ls_slots);
      info.be_slots = int(cfg_.scheduler_be_slots);
      info.other = {{"served_model_name", name_},
                    {"clock", "engine clock (wall time since the server started); ts and dur in microseconds"}};
      std::vector<trace::RequestTimes> times;
      for (const auto& t : snap.timings) times.push_back(trace::from_timing(t));
      trace::write_trace(cfg_.profiling_trace_path, trace::build_trace(info, snap.units, times));
      fmt::print(stderr, "trace of the last {} work units and {} requests: {}\n", snap.units.size(), times.size(),
                 cfg_.profiling_trace_path);
    } catch (const std::exception& e) {
      fmt::print(stderr, "trace not written: {}\n", e.what());
    }
  }
  note("stopped");
  {
    std::lock_guard lk(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

void ServerImpl::wait() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return done_; });
}

}  // namespace

std::unique_ptr<Server> Server::create(const EngineConfig& cfg, bool verbose) {
  return std::make_unique<ServerImpl>(cfg, verbose);
}

}  // namespace qllm::serve
