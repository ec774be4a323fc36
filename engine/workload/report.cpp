#include "engine/workload/report.h"

#include "engine/common/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <functional>

namespace qllm::workload {
namespace {

using nlohmann::json;

constexpr size_t kLabelWidth = 38;
constexpr size_t kMinColumn = 16;

json time_json(double t) { return has_time(t) ? json(t) : json(nullptr); }

std::string fixed(double v, int digits) {
  return has_time(v) ? fmt::format("{:.{}f}", v, digits) : std::string("-");
}

std::string ms(double seconds) { return fixed(seconds * 1000.0, 2); }

// A table under construction: rows of (label, one cell per run).
class Table {
 public:
  explicit Table(const std::vector<LabelledSummary>& runs) : runs_(runs) {
    width_ = kMinColumn;
    for (const auto& r : runs) width_ = std::max(width_, r.label.size() + 2);
  }

  size_t line_width() const { return kLabelWidth + width_ * runs_.size(); }

  void rule(std::string_view title, char fill) {
    const size_t w = line_width();
    if (title.empty()) {
      out_ += std::string(w, fill) + "\n";
      return;
    }
    const std::string t = fmt::format(" {} ", title);
    const size_t left = w > t.size() ? (w - t.size()) / 2 : 0;
    const size_t right = w > t.size() + left ? w - t.size() - left : 0;
    out_ += std::string(left, fill) + t + std::string(right, fill) + "\n";
  }

  void header() {
    out_ += fmt::format("{:<{}}", "", kLabelWidth);
    for (const auto& r : runs_) out_ += fmt::format("{:>{}}", r.label, width_);
    out_ += "\n";
  }

  void row(std::string_view label, const std::function<std::string(const RunSummary&)>& cell) {
    out_ += fmt::format("{:<{}}", label, kLabelWidth);
    for (const auto& r : runs_) out_ += fmt::format("{:>{}}", cell(r.summary), width_);
    out_ += "\n";
  }

  std::string take() { return std::move(out_); }

 private:
  const std::vector<LabelledSummary>& runs_;
  size_t width_ = kMinColumn;
  std::string out_;
};

using ClassOf = const ClassSummary& (*)(const RunSummary&);

void latency_rows(Table& t, ClassOf cls, std::string_view title, std::string_view name,
                  LatencyStats ClassSummary::*stat) {
  t.rule(title, '-');
  t.row(fmt::format("Mean {} (ms):", name),
        [&](const RunSummary& s) { return ms((cls(s).*stat).mean); });
  t.row(fmt::format("Median {} (ms):", name),
        [&](const RunSummary& s) { return ms((cls(s).*stat).median); });
  t.row(fmt::format("P90 {} (ms):", name),
        [&](const RunSummary& s) { return ms((cls(s).*stat).p90); });
  t.row(fmt::format("P99 {} (ms):", name),
        [&](const RunSummary& s) { return ms((cls(s).*stat).p99); });
}

void class_rows(Table& t, ClassOf cls, std::string_view title) {
  t.rule(title, '=');
  t.row("Requests (completed / total):", [&](const RunSummary& s) {
    return fmt::format("{} / {}", cls(s).completed, cls(s).requests);
  });
  t.row("Failed requests:", [&](const RunSummary& s) { return std::to_string(cls(s).failed); });
  t.row("Output tokens:",
        [&](const RunSummary& s) { return std::to_string(cls(s).output_tokens); });
  t.row("Request throughput (req/s):",
        [&](const RunSummary& s) { return fixed(cls(s).request_throughput, 2); });
  t.row("Output token throughput (tok/s):",
        [&](const RunSummary& s) { return fixed(cls(s).output_throughput, 2); });
  t.row("Total token throughput (tok/s):",
        [&](const RunSummary& s) { return fixed(cls(s).total_token_throughput, 2); });
  latency_rows(t, cls, "Time to First Token", "TTFT", &ClassSummary::ttft);
  latency_rows(t, cls, "Time per Output Token (excl. 1st token)", "TPOT", &ClassSummary::tpot);
  latency_rows(t, cls, "Inter-token Latency", "ITL", &ClassSummary::itl);
  latency_rows(t, cls, "End-to-end Latency", "E2E", &ClassSummary::e2e);
  latency_rows(t, cls, "Queue Time (arrival to first scheduled)", "queue", &ClassSummary::queue);
  t.rule("SLO and Preemption", '-');
  t.row("SLO:", [&](const RunSummary& s) {
    return cls(s).name == "all" ? std::string("per class") : to_string(cls(s).slo);
  });
  t.row("SLO attainment (%):",
        [&](const RunSummary& s) { return fixed(cls(s).slo_attainment * 100.0, 1); });
  t.row("Goodput (req/s):", [&](const RunSummary& s) { return fixed(cls(s).goodput, 2); });
  t.row("Preemptions (total):",
        [&](const RunSummary& s) { return std::to_string(cls(s).preemptions); });
  t.row("Preempted requests:",
        [&](const RunSummary& s) { return std::to_string(cls(s).preempted_requests); });
  t.row("Max preemptions of one request:",
        [&](const RunSummary& s) { return std::to_string(cls(s).max_preemptions); });
}

json stats_json(const LatencyStats& s) {
  return {{"count", s.count},        {"mean", time_json(s.mean)}, {"median", time_json(s.median)},
          {"p90", time_json(s.p90)}, {"p99", time_json(s.p99)},   {"min", time_json(s.min)},
          {"max", time_json(s.max)}};
}

json class_json(const ClassSummary& c) {
  return {{"requests", c.requests},
          {"completed", c.completed},
          {"failed", c.failed},
          {"prompt_tokens", c.prompt_tokens},
          {"output_tokens", c.output_tokens},
          {"request_throughput", c.request_throughput},
          {"output_throughput", c.output_throughput},
          {"total_token_throughput", c.total_token_throughput},
          {"ttft_s", stats_json(c.ttft)},
          {"tpot_s", stats_json(c.tpot)},
          {"itl_s", stats_json(c.itl)},
          {"e2e_s", stats_json(c.e2e)},
          {"queue_s", stats_json(c.queue)},
          {"slo", {{"ttft_s", c.slo.ttft_s}, {"tpot_s", c.slo.tpot_s}, {"e2e_s", c.slo.e2e_s}}},
          {"slo_met", c.slo_met},
          {"slo_attainment", time_json(c.slo_attainment)},
          {"goodput", c.goodput},
          {"preemptions", c.preemptions},
          {"preempted_requests", c.preempted_requests},
          {"max_preemptions", c.max_preemptions}};
}

}  // namespace

std::string format_summary_table(const std::vector<LabelledSummary>& runs, std::string_view title) {
  Table t(runs);
  t.rule(title, '=');
  t.header();
  t.row("Benchmark duration (s):", [](const RunSummary& s) { return fixed(s.duration_s, 2); });
  auto any = [&](ClassOf cls) {
    return std::any_of(runs.begin(), runs.end(),
                       [&](const LabelledSummary& r) { return cls(r.summary).requests > 0; });
  };
  const ClassOf ls = [](const RunSummary& s) -> const ClassSummary& { return s.ls; };
  const ClassOf be = [](const RunSummary& s) -> const ClassSummary& { return s.be; };
  const ClassOf all = [](const RunSummary& s) -> const ClassSummary& { return s.all; };
  if (any(ls)) class_rows(t, ls, "LS: latency-sensitive");
  if (any(be)) class_rows(t, be, "BE: best-effort");
  if (any(ls) && any(be)) class_rows(t, all, "All requests");
  t.rule("", '=');
  return t.take();
}

json record_to_json(const RequestRecord& r) {
  json times = json::array();
  for (double x : r.token_times_s) times.push_back(time_json(x));
  return {{"id", r.id},
          {"cls", std::string(class_name(r.cls))},
          {"arrival_s", time_json(r.arrival_s)},
          {"first_scheduled_s", time_json(r.first_scheduled_s)},
          {"first_token_s", time_json(r.first_token_s)},
          {"token_times_s", std::move(times)},
          {"finish_s", time_json(r.finish_s)},
          {"prompt_tokens", r.prompt_tokens},
          {"output_tokens", r.output_tokens},
          {"preemptions", r.preemptions},
          {"finished_ok", r.finished_ok},
          {"error", r.error}};
}

RequestRecord record_from_json(const json& j, std::string_view what) {
  if (!j.is_object()) fail("{}: a record must be a JSON object", what);
  auto field = [&](const char* key) -> const json& {
    const auto it = j.find(key);
    if (it == j.end()) fail("{}: record field '{}' is missing", what, key);
    return *it;
  };
  auto time = [&](const json& v, const char* key) -> double {
    if (v.is_null()) return kNoTime;
    if (!v.is_number()) fail("{}: record field '{}' must be a number or null", what, key);
    return v.get<double>();
  };
  auto integer = [&](const char* key) -> int64_t {
    const json& v = field(key);
    if (!v.is_number_integer()) fail("{}: record field '{}' must be an integer", what, key);
    return v.get<int64_t>();
  };
  RequestRecord r;
  r.id = integer("id");
  const json& cls = field("cls");
  if (cls != "LS" && cls != "BE")
    fail("{}: record field 'cls' must be \"LS\" or \"BE\", got {}", what, cls.dump());
  r.cls = cls == "LS" ? RequestClass::LS : RequestClass::BE;
  r.arrival_s = time(field("arrival_s"), "arrival_s");
  r.first_scheduled_s = time(field("first_scheduled_s"), "first_scheduled_s");
  r.first_token_s = time(field("first_token_s"), "first_token_s");
  const json& times = field("token_times_s");
  if (!times.is_array()) fail("{}: record field 'token_times_s' must be an array", what);
  for (const auto& t : times) r.token_times_s.push_back(time(t, "token_times_s"));
  r.finish_s = time(field("finish_s"), "finish_s");
  r.prompt_tokens = integer("prompt_tokens");
  r.output_tokens = integer("output_tokens");
  r.preemptions = integer("preemptions");
  const json& ok = field("finished_ok");
  if (!ok.is_boolean()) fail("{}: record field 'finished_ok' must be true or false", what);
  r.finished_ok = ok.get<bool>();
  const json& err = field("error");
  if (!err.is_string()) fail("{}: record field 'error' must be a string", what);
  r.error = err.get<std::string>();
  return r;
}

json summary_to_json(const RunSummary& s) {
  return {{"duration_s", s.duration_s},
          {"LS", class_json(s.ls)},
          {"BE", class_json(s.be)},
          {"all", class_json(s.all)}};
}

json run_to_json(std::string_view label, const WorkloadSpec& spec,
                 const std::vector<RequestRecord>& records, const RunSummary& summary,
                 const json& extra) {
  json recs = json::array();
  for (const auto& r : records) recs.push_back(record_to_json(r));
  return {{"format", "qllm-run/1"},     {"label", std::string(label)},
          {"spec", spec_to_json(spec)}, {"summary", summary_to_json(summary)},
          {"records", std::move(recs)}, {"extra", extra}};
}

void write_json_file(const std::filesystem::path& path, const json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot open for writing", path.string());
  out << j.dump(2) << "\n";
  if (!out.flush()) fail("{}: write failed", path.string());
}

std::vector<RequestRecord> read_run_records(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open run file", path.string());
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path.string(), e.what());
  }
  if (!j.is_object() || !j.contains("records") || !j["records"].is_array())
    fail("{}: not a qllm run file (no \"records\" array)", path.string());
  std::vector<RequestRecord> out;
  const auto& recs = j["records"];
  for (size_t i = 0; i < recs.size(); ++i)
    out.push_back(record_from_json(recs[i], fmt::format("{}: records[{}]", path.string(), i)));
  return out;
}

}  // namespace qllm::workload
