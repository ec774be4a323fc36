// qllm serve: the OpenAI-compatible HTTP server (engine/serve/server.h).
//
// SIGINT/SIGTERM shut it down gracefully: no new requests, in-flight requests
// get server.shutdown_timeout_s to finish, the rest are cancelled. A second
// signal exits at once.
#include "engine/cli/commands.h"
#include "engine/config/engine_config.h"
#include "engine/serve/server.h"

#include <fmt/format.h>

#include <csignal>
#include <cstdlib>
#include <pthread.h>
#include <thread>

namespace qllm::cli {

Run add_serve(CLI::App& app) {
  struct Opts {
    EngineOptions engine;
    std::string host;
    int port = -1;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add_to(app);
  app.add_option("--host", o->host, "address to listen on (overrides server.host)");
  app.add_option("--port", o->port, "port to listen on, 0 = any free port (overrides server.port)");
  app.add_flag("-q,--quiet", o->quiet, "no progress or status lines");
  return [o]() -> int {
    const EngineConfig cfg = o->engine.load([&](EngineConfig& c) {
      if (!o->host.empty()) c.server_host = o->host;
      if (o->port >= 0) c.server_port = o->port;
    });

    // Signals are taken by sigwait on this thread only: block them before any
    // other thread exists, so every thread inherits the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    auto server = serve::Server::create(cfg, !o->quiet);
    server->start();
    int sig = 0;
    sigwait(&sigs, &sig);
    if (!o->quiet) fmt::print(stderr, "received {}\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::thread([sigs]() mutable {  // a second signal: exit now
      int again = 0;
      sigwait(&sigs, &again);
      std::_Exit(128 + again);
    }).detach();
    server->shutdown(cfg.server_shutdown_timeout_s);
    server->wait();
    return 0;
  };
}

}  // namespace qllm::cli
