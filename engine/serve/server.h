// qllm serve: the OpenAI-compatible HTTP server (engine/serve/openai_api.h for
// the bodies) in front of the engine (engine/serve/async_engine.h).
//
//   POST /v1/completions, POST /v1/chat/completions  (stream: Server-Sent Events)
//   GET  /v1/models, GET /health (503 once the engine has failed), GET /metrics
//   POST /tokenize
//
// Every request runs on its own connection thread; the engine runs on one
// thread of its own. A client that disconnects mid-stream cancels its request
// (its KV blocks are freed); a bad request gets a 4xx with an OpenAI error
// body and touches nothing else.
#pragma once

#include "engine/config/engine_config.h"

#include <memory>
#include <string>

namespace qllm::serve {

class Server {
 public:
  // Loads the model named by cfg.model_path (builtin:... included), its
  // tokenizer and chat template, and starts the engine on the dispatcher the
  // configuration selects. Throws qllm::Error naming what is wrong (a
  // checkpoint, a tokenizer, a dispatcher that is not available).
  static std::unique_ptr<Server> create(const EngineConfig& cfg, bool verbose = true);
  virtual ~Server() = default;

  // Binds cfg.server.host:port (port 0: any free port) and starts serving on
  // background threads. Returns the bound port; throws qllm::Error when the
  // address cannot be bound.
  virtual int start() = 0;

  // Graceful shutdown: stops accepting connections and new requests (503),
  // lets in-flight requests run for up to `timeout_s`, cancels the rest
  // (their streams end with finish_reason "abort"), then stops the
  // engine. Idempotent; safe to call from any thread except a handler.
  virtual void shutdown(double timeout_s) = 0;

  // Blocks until shutdown() has completed.
  virtual void wait() = 0;

  virtual const std::string& model_name() const = 0;

  // For tests of the failure path: the engine fails as if its dispatcher had
  // thrown `why` (GET /health then answers 503).
  virtual void inject_engine_failure(const std::string& why) = 0;
};

}  // namespace qllm::serve
