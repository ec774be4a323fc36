// qllm run --workload FILE: a mixed-priority workload through the engine, once
// per policy, with per-class latency side by side and every raw sample in JSON.
#include "engine/cli/commands.h"
#include "engine/common/error.h"
#include "engine/config/engine_config.h"
#include "engine/core/engine_setup.h"
#include "engine/core/workload_runner.h"
#include "engine/cpu/ops.h"
#include "engine/gpu/dispatcher.h"
#include "engine/model/builtin.h"
#include "engine/model/checkpoint.h"
#include "engine/workload/report.h"
#include "profiling/trace_export.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sstream>

namespace qllm::cli {

Run add_run(CLI::App& app) {
  struct Opts {
    EngineOptions engine;
    std::string workload, out = "qllm-run.json", policies, trace;
    bool quiet = false, unit_log = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-w,--workload", o->workload, "workload YAML (configs/workloads/NAME.yaml)")->required();
  o->engine.add_to(app);
  app.add_option("--policies", o->policies,
                 "comma-separated policies to compare (default: fcfs-iteration,priority-layer,priority-expert)");
  app.add_option("-o,--out", o->out, "JSON file with every request's samples and the summaries")
      ->capture_default_str();
  app.add_flag("-q,--quiet", o->quiet, "only the table");
  app.add_flag("--unit-log", o->unit_log,
               "also write every work unit (slot, class, kind, layer, expert, start, end) to the JSON, "
               "for profiling/plot_bench.py timeline");
  app.add_option("--trace", o->trace,
                 "write a Perfetto / chrome://tracing trace of the work units per policy to "
                 "PREFIX-<policy>.json (default: profiling.trace_path, a trailing .json dropped)")
      ->option_text("PREFIX");
  return [o]() -> int {
    const EngineConfig cfg = o->engine.load();
    const std::string trace_prefix = o->trace.empty() ? cfg.profiling_trace_path : o->trace;
    cpu::set_num_threads(int(cfg.cpu_threads));
    const auto spec = workload::load_workload_spec(o->workload);
    const auto gen = workload::options_for_spec_file(o->workload);

    std::vector<std::string> policies;
    std::stringstream ss(o->policies.empty() ? "fcfs-iteration,priority-layer,priority-expert" : o->policies);
    for (std::string p; std::getline(ss, p, ',');)
      if (!p.empty()) policies.push_back(p);
    for (const auto& p : policies) parse_policy(p);  // refuse typos before any work

    const gpu::DispatcherChoice choice = gpu::choose_dispatcher(cfg);  // refuses before any work
    const auto dir = resolve_model_path(cfg.model_path, !o->quiet);
    CheckpointOptions copts;
    copts.progress = !o->quiet;
    const auto ck = Checkpoint::open(dir, copts);
    const gpu::Dispatch dispatch = gpu::make_dispatch(cfg, ck, choice, !o->quiet);
    const std::string& dispatcher = dispatch.choice.name;
    if (!o->quiet)
      fmt::print(stderr, "workload {} on {} ({}), dispatcher {} ({}): {}\n", spec.name, dir.string(),
                 ck.desc().architecture, dispatcher, dispatch.choice.reason, dispatch.detail);

    std::vector<workload::LabelledSummary> table;
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& p : policies) {
      auto lim = dispatch.limits;
      lim.policy = parse_policy(p);
      const auto r = run_workload(*dispatch.backend, spec, gen, lim);
      const auto summary = workload::summarize(r.records, spec);
      table.push_back({p, summary});
      nlohmann::json extra = {{"policy", p},
                              {"dispatcher", dispatcher},
                              {"clock", "measured: units advance it by their wall time, idle gaps jump"},
                              {"model", dir.string()},
                              {"architecture", ck.desc().architecture},
                              {"unit_count", r.units},
                              {"engine_config", to_yaml(cfg)}};
      if (o->unit_log) {
        // expert: the position among the layer's experts that received tokens.
        static constexpr const char* kKind[] = {"attn", "expert", "head", "done"};
        nlohmann::json units = nlohmann::json::array();
        for (const auto& u : r.unit_log)
          units.push_back({{"slot", u.slot},
                           {"class", u.slot < lim.ls_slots ? "LS" : "BE"},
                           {"kind", kKind[int(u.unit.kind)]},
                           {"layer", u.unit.layer},
                           {"expert", u.unit.expert},
                           {"start_s", u.start_s},
                           {"end_s", u.end_s}});
        extra["units"] = std::move(units);
      }
      runs.push_back(workload::run_to_json(p, spec, r.records, summary, extra));
      if (!trace_prefix.empty()) {
        trace::TraceInfo info;
        info.dispatcher = dispatcher;
        info.policy = p;
        info.ls_slots = lim.ls_slots;
        info.be_slots = lim.be_slots;
        info.other = {{"workload", spec.name}, {"model", dir.string()}, {"architecture", ck.desc().architecture}};
        std::vector<trace::RequestTimes> times;
        for (const auto& rec : r.records) times.push_back(trace::from_record(rec));
        const auto path = trace::trace_path_for(trace_prefix, p);
        trace::write_trace(path, trace::build_trace(info, r.unit_log, times));
        if (!o->quiet) fmt::print(stderr, "trace: {} (open in ui.perfetto.dev or chrome://tracing)\n", path.string());
      }
      if (!o->quiet)
        fmt::print(stderr, "{}: {} requests, {} units, {} preemptions, {:.3f} s\n", p, r.records.size(),
                   r.units, r.preemptions, r.duration_s);
    }
    fmt::print("{}", workload::format_summary_table(table, fmt::format("workload {}", spec.name)));
    workload::write_json_file(o->out, {{"format", "qllm-runs/1"}, {"runs", runs}});
    if (!o->quiet) fmt::print(stderr, "raw samples: {}\n", o->out);
    return 0;
  };
}

}  // namespace qllm::cli
