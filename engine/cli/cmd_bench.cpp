// qllm bench --workload FILE: replays a workload against a running
// OpenAI-compatible server over HTTP (engine/bench/runner.h), or against one
// started in this process (--in-process), and reports per-class latency as
// measured by the client, with every raw sample in JSON.
#include "engine/bench/client.h"
#include "engine/bench/runner.h"
#include "engine/cli/commands.h"
#include "engine/common/error.h"
#include "engine/config/engine_config.h"
#include "engine/serve/server.h"
#include "engine/workload/generator.h"
#include "engine/workload/report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <memory>

namespace qllm::cli {
namespace {

// Shuts an in-process server down however the command ends.
struct InProcessServer {
  std::unique_ptr<serve::Server> server;
  ~InProcessServer() {
    if (!server) return;
    try {
      server->shutdown(5.0);
      server->wait();
    } catch (const std::exception& e) {
      fmt::print(stderr, "qllm bench: shutting the in-process server down: {}\n", e.what());
    }
  }
};

}  // namespace

Run add_bench(CLI::App& app) {
  struct Opts {
    std::string workload, url = "http://127.0.0.1:8000", model, endpoint = "completions", label = "bench",
                          out = "bench.json", config;
    std::vector<std::string> sets;
    double request_rate = 0, timeout_s = 600;
    int64_t max_concurrency = 0, vocab = 256, ls_priority = 0, be_priority = 1;
    bool in_process = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  app.footer(
      "Each request is POST /v1/completions with a prompt of synthetic token ids (as many as the "
      "workload draws, ids below --vocab), max_tokens = the drawn output length, ignore_eos, "
      "temperature 0, stream with include_usage, and priority --ls-priority or --be-priority. "
      "With --endpoint chat the prompt is one user message of N words \"hi hi ...\": its length "
      "in tokens is then only approximate (the chat template and the tokenizer add and merge "
      "tokens). Latencies are measured on the client: they include the network and HTTP.");
  app.add_option("-w,--workload", o->workload, "workload YAML (configs/workloads/NAME.yaml)")->required();
  auto* url = app.add_option("--url", o->url, "server address: http://HOST:PORT (a trailing /v1 is accepted)")
                  ->capture_default_str();
  app.add_option("--model", o->model, "model name to send (default: the first one GET /v1/models lists)");
  app.add_option("--endpoint", o->endpoint, "completions (token-id prompts) or chat (word prompts)")
      ->check(CLI::IsMember({"completions", "chat"}))
      ->capture_default_str();
  app.add_option("--label", o->label, "column label of the table and \"label\" in the JSON")->capture_default_str();
  app.add_option("-o,--out", o->out, "JSON file with every request's samples and the summaries")
      ->capture_default_str();
  app.add_option("--request-rate", o->request_rate,
                 "requests/s of the open stream, overriding the workload's arrivals.rate (poisson, gamma)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-concurrency", o->max_concurrency,
                 "at most this many requests in flight; a request due beyond it waits on the client "
                 "(its latency counts from its scheduled arrival). 0 = no cap")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--timeout-s", o->timeout_s, "a request not finished this long after it was sent fails")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--vocab", o->vocab, "prompt token ids are drawn below this")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 31))
      ->capture_default_str();
  app.add_option("--ls-priority", o->ls_priority, "\"priority\" sent with LS requests (lower = more urgent)")
      ->capture_default_str();
  app.add_option("--be-priority", o->be_priority, "\"priority\" sent with BE requests")->capture_default_str();
  auto* in_process =
      app.add_flag("--in-process", o->in_process,
                   "start the server in this process on a free loopback port and bench it (model "
                   "from the configuration: --set model.path=...)");
  app.add_option("-c,--config", o->config, "with --in-process: engine configuration YAML")->needs(in_process);
  app.add_option("--set", o->sets, "with --in-process: override a configuration key, section.key=value")
      ->needs(in_process);
  app.add_flag("-q,--quiet", o->quiet, "only the table and failures");
  in_process->excludes(url);

  return [o]() -> int {
    auto spec = workload::load_workload_spec(o->workload);
    if (o->request_rate > 0) bench::override_request_rate(spec, o->request_rate);
    workload::validate(spec, o->workload);
    const auto gen = workload::options_for_spec_file(o->workload);

    InProcessServer local;
    EngineConfig cfg;
    std::string url_text = o->url;
    if (o->in_process) {
      EngineOptions engine;
      engine.config = o->config;
      engine.sets = o->sets;
      cfg = engine.load([](EngineConfig& c) {
        c.server_host = "127.0.0.1";
        c.server_port = 0;
      });
      local.server = serve::Server::create(cfg, !o->quiet);
      const int port = local.server->start();
      url_text = fmt::format("http://127.0.0.1:{}", port);
      if (!o->quiet) fmt::print(stderr, "in-process server on {}\n", url_text);
    }

    bench::BenchOptions opts;
    opts.url = bench::parse_url(url_text);
    const nlohmann::json models = bench::fetch_models(opts.url, std::min(o->timeout_s, 10.0));
    opts.request.endpoint = bench::parse_endpoint(o->endpoint);
    opts.request.model = bench::pick_model(models, o->model);
    opts.request.vocab = o->vocab;
    opts.request.ls_priority = o->ls_priority;
    opts.request.be_priority = o->be_priority;
    opts.request.timeout_s = o->timeout_s;
    opts.max_concurrency = o->max_concurrency;
    double last_print = 0;
    if (!o->quiet) {
      fmt::print(stderr, "workload {} against {} (model {}, /v1/{})\n", spec.name, opts.url.text,
                 opts.request.model, o->endpoint == "chat" ? "chat/completions" : "completions");
      opts.on_progress = [&last_print](const bench::BenchProgress& p) {
        if (p.elapsed_s - last_print < 1.0) return;
        last_print = p.elapsed_s;
        fmt::print(stderr, "[{:7.1f} s] {} done ({} failed), {} in flight\n", p.elapsed_s, p.done, p.failed,
                   p.in_flight);
      };
    }

    const auto run = bench::run_bench(spec, gen, opts);
    const auto summary = workload::summarize(run.records, spec, run.duration_s);
    fmt::print("{}", workload::format_summary_table(
                         {{o->label, summary}}, fmt::format("workload {} against {}", spec.name, opts.url.text)));

    // Failures: how many, and the most frequent reasons.
    int64_t failed = 0, short_outputs = 0;
    std::map<std::string, int64_t> reasons;
    for (size_t i = 0; i < run.records.size(); ++i) {
      const auto& r = run.records[i];
      if (!r.finished_ok) {
        ++failed;
        ++reasons[r.error];
      } else if (r.output_tokens != run.traces[i].max_tokens) {
        ++short_outputs;
      }
    }
    if (failed > 0) {
      fmt::print(stderr, "{} of {} requests failed\n", failed, run.records.size());
      std::vector<std::pair<int64_t, std::string>> by_count;
      for (const auto& [why, n] : reasons) by_count.emplace_back(n, why);
      std::sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      for (size_t i = 0; i < by_count.size() && i < 3; ++i)
        fmt::print(stderr, "  {} x {}\n", by_count[i].first, by_count[i].second);
    } else if (!o->quiet) {
      fmt::print(stderr, "all {} requests finished\n", run.records.size());
    }
    if (short_outputs > 0)
      fmt::print(stderr,
                 "{} finished requests returned a number of tokens other than their max_tokens "
                 "(does the server honour ignore_eos?)\n",
                 short_outputs);

    nlohmann::json extra = {
        {"client", "qllm bench"},
        {"url", opts.url.text},
        {"endpoint", o->endpoint},
        {"model", opts.request.model},
        {"request_rate", spec.arrivals_process == "trace" ? nlohmann::json() : nlohmann::json(spec.arrivals_rate)},
        {"max_concurrency", o->max_concurrency},
        {"timeout_s", o->timeout_s},
        {"vocab", o->vocab},
        {"ls_priority", o->ls_priority},
        {"be_priority", o->be_priority},
        {"server_models", models},
        {"in_process", o->in_process},
        {"clock", "client: steady clock from the start of the run; first_scheduled_s is not known to a client"},
        {"requests", bench::traces_to_json(run.traces)}};
    if (o->in_process) extra["engine_config"] = to_yaml(cfg);
    workload::write_json_file(o->out, workload::run_to_json(o->label, spec, run.records, summary, extra));
    if (!o->quiet) fmt::print(stderr, "raw samples: {}\n", o->out);
    return 0;
  };
}

}  // namespace qllm::cli
