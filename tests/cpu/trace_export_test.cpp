// The unit log as a Chrome/Perfetto trace: a synthetic log with two slots and
// a preempted BE pass, parsed back and checked event by event; then the log
// of a real engine run on a fake clock, whose preempted slices must match the
// engine's own preemption count.
#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/core/cpu_engine.h"
#include "engine/model/make_model.h"
#include "profiling/trace_export.h"
#include "tests/test_paths.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

using namespace qllm;
using json = nlohmann::json;

namespace {

constexpr double kEps = 1e-6;  // microseconds

sched::Cursor attn(int layer) { return {sched::UnitKind::Attn, int16_t(layer), 0}; }
sched::Cursor expert(int layer, int e) { return {sched::UnitKind::Expert, int16_t(layer), int16_t(e)}; }
sched::Cursor head() { return {sched::UnitKind::Head, 1, 0}; }

// Two slots (0: LS, 1: BE), two layers, 1 ms units from t = 0.5 s.
// BE pass 0 runs attn L0 and expert L0 #0, then the LS pass runs whole
// (4 units), then BE pass 0 resumes; BE pass 1 follows unpreempted.
std::vector<UnitRecord> synthetic_log() {
  const std::vector<std::pair<int, sched::Cursor>> seq = {
      {1, attn(0)}, {1, expert(0, 0)},                                    // BE pass 0 starts
      {0, attn(0)}, {0, expert(0, 0)}, {0, attn(1)}, {0, head()},        // LS pass 0
      {1, expert(0, 1)}, {1, attn(1)}, {1, expert(1, 0)}, {1, head()},  // BE pass 0 resumes
      {1, attn(0)}, {1, attn(1)}, {1, head()},                           // BE pass 1 (no experts)
  };
  std::vector<UnitRecord> log;
  double t = 0.5;
  for (const auto& [slot, c] : seq) {
    log.push_back({slot, c, t, t + 1e-3});
    t += 1e-3;
  }
  return log;
}

std::vector<trace::RequestTimes> synthetic_requests() {
  trace::RequestTimes be;
  be.id = 1;
  be.cls = PriorityClass::BE;
  be.arrival_s = 0.4995;
  be.first_scheduled_s = 0.5;
  be.first_token_s = 0.51;
  be.finish_s = 0.513;
  be.finish = "length";
  trace::RequestTimes ls;
  ls.id = 2;
  ls.cls = PriorityClass::LS;
  ls.arrival_s = 0.5015;
  ls.first_scheduled_s = 0.502;
  ls.first_token_s = 0.506;
  ls.finish_s = 0.506;
  ls.finish = "length";
  trace::RequestTimes queued;  // arrived, never scheduled (still waiting at the end)
  queued.id = 3;
  queued.cls = PriorityClass::LS;
  queued.arrival_s = 0.512;
  return {be, ls, queued};
}

trace::TraceInfo two_slots() {
  trace::TraceInfo info;
  info.dispatcher = "cpu";
  info.policy = "priority-expert";
  info.ls_slots = 1;
  info.be_slots = 1;
  return info;
}

// A JSON time in microseconds as Perfetto's JSON importer turns it into
// nanoseconds: int64(value * 1000), truncating.
int64_t perfetto_ns(const json& us) { return static_cast<int64_t>(us.get<double>() * 1000.0); }

bool by_ts(const json& a, const json& b) { return a["ts"].get<double>() < b["ts"].get<double>(); }

// Checks the format rules every trace must keep and returns the X events by tid.
std::map<int, std::vector<json>> check_well_formed(const json& t) {
  std::map<int, std::vector<json>> by_tid;
  EXPECT_TRUE(t.is_object());
  EXPECT_EQ(t.value("displayTimeUnit", ""), "ms");
  EXPECT_TRUE(t.at("traceEvents").is_array());
  std::set<int> named;
  int processes = 0;
  for (const auto& e : t.at("traceEvents")) {
    EXPECT_TRUE(e.contains("ph") && e.contains("pid") && e.contains("name")) << e;
    if (e["ph"] == "M" && e["name"] == "thread_name") named.insert(e["tid"].get<int>());
    if (e["ph"] == "M" && e["name"] == "process_name") ++processes;
  }
  EXPECT_EQ(processes, 1);
  for (const auto& e : t.at("traceEvents")) {
    if (e["ph"] != "X") continue;
    EXPECT_GE(e.at("ts").get<double>(), 0) << e;
    EXPECT_GE(e.at("dur").get<double>(), 0) << e;
    EXPECT_TRUE(named.count(e.at("tid").get<int>())) << "no thread_name for " << e;
    by_tid[e["tid"].get<int>()].push_back(e);
  }
  for (auto& [tid, v] : by_tid) {
    std::sort(v.begin(), v.end(), by_ts);
    for (size_t i = 1; i < v.size(); ++i) {
      EXPECT_LE(v[i - 1]["ts"].get<double>() + v[i - 1]["dur"].get<double>(), v[i]["ts"].get<double>() + kEps)
          << "overlap on tid " << tid << ": " << v[i - 1] << " and " << v[i];
      // As Perfetto reads them: whole nanoseconds, truncated. Adjacent units
      // must not overlap by even 1 ns there (the next would nest under it).
      EXPECT_LE(perfetto_ns(v[i - 1]["ts"]) + perfetto_ns(v[i - 1]["dur"]), perfetto_ns(v[i]["ts"]))
          << "overlap in ns on tid " << tid << ": " << v[i - 1] << " and " << v[i];
    }
  }
  return by_tid;
}

// tid of the track with this thread_name.
int tid_named(const json& t, const std::string& name) {
  for (const auto& e : t["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name" && e["args"]["name"] == name) return e["tid"].get<int>();
  ADD_FAILURE() << "no track named " << name;
  return -1;
}

json parse_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());  // throws on invalid JSON
}

}  // namespace

TEST(TraceExport, SyntheticLogRoundTripsThroughAFile) {
  const auto log = synthetic_log();
  const auto path = test::temp_dir("trace-export") / "t.json";
  trace::write_trace(path, trace::build_trace(two_slots(), log, synthetic_requests()));
  json t;
  ASSERT_NO_THROW(t = parse_file(path));
  const auto by_tid = check_well_formed(t);

  // One process, named by dispatcher and policy; tracks named by slot and class.
  for (const auto& e : t["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") {
      EXPECT_EQ(e["args"]["name"], "qllm engine (cpu, priority-expert)");
    }
  }
  const int ls = tid_named(t, "slot 0 (LS)"), be = tid_named(t, "slot 1 (BE)"), req = tid_named(t, "requests");
  EXPECT_NE(ls, be);
  EXPECT_NE(req, ls);
  EXPECT_NE(req, be);

  // Every unit is a slice at engine seconds x 1e6, with its name and args.
  std::vector<json> units;
  for (int tid : {ls, be})
    for (const auto& e : by_tid.at(tid))
      if (e["name"] != "preempted") units.push_back(e);
  ASSERT_EQ(units.size(), log.size());
  std::sort(units.begin(), units.end(), by_ts);
  const std::vector<std::string> names = {"attn L0", "expert L0 #0", "attn L0", "expert L0 #0", "attn L1",
                                          "head",    "expert L0 #1", "attn L1", "expert L1 #0", "head",
                                          "attn L0", "attn L1",      "head"};
  const std::vector<int> passes = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
  for (size_t i = 0; i < log.size(); ++i) {
    const auto& e = units[i];
    EXPECT_NEAR(e["ts"].get<double>(), log[i].start_s * 1e6, kEps) << e;
    EXPECT_NEAR(e["dur"].get<double>(), (log[i].end_s - log[i].start_s) * 1e6, kEps) << e;
    EXPECT_EQ(e["tid"].get<int>(), log[i].slot == 0 ? ls : be) << e;
    EXPECT_EQ(e["name"], names[i]) << i;
    EXPECT_EQ(e["args"]["slot"], log[i].slot);
    EXPECT_EQ(e["args"]["pass"], passes[i]) << e;
    const auto kind = log[i].unit.kind;
    EXPECT_EQ(e["args"]["layer"], kind == sched::UnitKind::Head ? -1 : int(log[i].unit.layer)) << e;
    EXPECT_EQ(e["args"]["expert"], kind == sched::UnitKind::Expert ? int(log[i].unit.expert) : -1) << e;
    EXPECT_EQ(e["args"]["class"], log[i].slot == 0 ? "LS" : "BE");
  }
  EXPECT_DOUBLE_EQ(units[0]["ts"].get<double>(), 500000.0);

  // Exactly one preempted slice: on the BE track, from the end of expert L0 #0
  // (0.502 s) to the resumed expert L0 #1 (0.506 s), after the LS pass's 4 units.
  std::vector<json> pre;
  for (const auto& e : t["traceEvents"])
    if (e["ph"] == "X" && e["name"] == "preempted") pre.push_back(e);
  ASSERT_EQ(pre.size(), 1u);
  EXPECT_EQ(pre[0]["cat"], "preemption");
  EXPECT_EQ(pre[0]["tid"].get<int>(), be);
  EXPECT_NEAR(pre[0]["ts"].get<double>(), 502000.0, kEps);
  EXPECT_NEAR(pre[0]["dur"].get<double>(), 4000.0, kEps);
  EXPECT_EQ(pre[0]["args"]["pass"], 0);
  EXPECT_EQ(pre[0]["args"]["by_slot"], 0);
  EXPECT_EQ(pre[0]["args"]["units"], 4);

  // Requests: arrival, first token and finish instants on the requests track.
  std::map<std::string, std::set<uint64_t>> instants;
  for (const auto& e : t["traceEvents"]) {
    if (e["ph"] != "i") continue;
    EXPECT_EQ(e["tid"].get<int>(), req) << e;
    EXPECT_EQ(e["cat"], "request");
    const std::string cls = e["args"]["class"];
    EXPECT_EQ(e["name"].get<std::string>().rfind(cls + " ", 0), 0u) << e;
    instants[e["name"].get<std::string>().substr(3)].insert(e["args"]["id"].get<uint64_t>());
    if (e["args"]["id"] == 2 && e["name"] == "LS arrival") {
      EXPECT_NEAR(e["ts"].get<double>(), 501500.0, kEps);
    }
  }
  EXPECT_EQ(instants["arrival"], (std::set<uint64_t>{1, 2, 3}));
  EXPECT_EQ(instants["first token"], (std::set<uint64_t>{1, 2}));
  EXPECT_EQ(instants["finish"], (std::set<uint64_t>{1, 2}));

  // LS waiting: 1 at 0.5015 s, 0 at 0.502 s, 1 at 0.512 s (never scheduled).
  std::vector<std::pair<double, int>> ls_waiting;
  for (const auto& e : t["traceEvents"])
    if (e["ph"] == "C" && e["name"] == "LS waiting")
      ls_waiting.emplace_back(e["ts"].get<double>(), e["args"]["requests"].get<int>());
  ASSERT_EQ(ls_waiting.size(), 3u);
  EXPECT_NEAR(ls_waiting[0].first, 501500.0, kEps);
  EXPECT_EQ(ls_waiting[0].second, 1);
  EXPECT_NEAR(ls_waiting[1].first, 502000.0, kEps);
  EXPECT_EQ(ls_waiting[1].second, 0);
  EXPECT_EQ(ls_waiting[2].second, 1);

  EXPECT_EQ(t["otherData"]["policy"], "priority-expert");
}

TEST(TraceExport, UnpreemptedPassesHaveNoPreemptedSlices) {
  auto log = synthetic_log();
  log.erase(log.begin(), log.begin() + 2);  // the BE pass starts after the LS pass: no preemption
  log.erase(log.begin() + 4, log.begin() + 8);
  const auto t = trace::build_trace(two_slots(), log, {});
  check_well_formed(t);
  for (const auto& e : t["traceEvents"]) EXPECT_NE(e["name"], "preempted") << e;
}

// Unit edges as a measured clock gives them: the edge two adjacent units
// share stays shared when Perfetto truncates to whole nanoseconds
// (check_well_formed). Each of these ends, written as its shortest decimal
// in microseconds, reads back 1 ns early (4099.53 * 1000 = 4099529.99...).
TEST(TraceExport, AdjacentUnitsMeetExactlyInNanoseconds) {
  const std::vector<std::pair<double, double>> edges = {{0.004078838, 0.00409953},
                                                        {0.004131718, 0.00416653},
                                                        {2.127693339, 2.127756945},
                                                        {2.127848643, 2.127900982},
                                                        {2.128109395, 2.128117908}};
  std::vector<UnitRecord> log;
  for (const auto& [a, b] : edges) {
    log.push_back({1, attn(0), a, b});
    log.push_back({1, head(), b, b + 1e-5});
  }
  double t = 3.0;  // and a long run of irregular lengths
  for (int i = 0; i < 4000; ++i) {
    const double end = t + 1e-6 * (37.123456789 + 3.3 * (i % 17));
    log.push_back({(i / 3) % 2, i % 3 == 2 ? head() : attn(0), t, end});
    t = end;
  }
  check_well_formed(trace::build_trace(two_slots(), log, {}));
}

TEST(TraceExport, PathPerPolicy) {
  EXPECT_EQ(trace::trace_path_for("out/t", "fcfs-iteration"), std::filesystem::path("out/t-fcfs-iteration.json"));
  EXPECT_EQ(trace::trace_path_for("t.json", "priority-expert"), std::filesystem::path("t-priority-expert.json"));
}

TEST(TraceExport, UnwritablePathThrows) {
  EXPECT_THROW(trace::write_trace("/nonexistent-dir/x/t.json", json::object()), qllm::Error);
}

// A real engine on a fake clock: LS requests arriving while BE passes run.
// Every preemption the engine counts is one preempted slice on a BE track.
TEST(TraceExport, EngineRunMatchesItsPreemptionCount) {
  const auto ck = test::open_tiny("mixtral", 11, "trace-engine");
  const cpu::ReferenceModel model(ck);

  FakeClock clock(1e-3);
  EngineLimits lim;
  lim.ls_slots = 1;
  lim.be_slots = 1;
  lim.policy = sched::Policy::PriorityExpert;
  CpuEngine engine(model, lim, clock);
  std::vector<Request> reqs;
  for (uint64_t i = 0; i < 6; ++i) {
    Request r;
    r.id = i + 1;
    r.cls = i % 3 == 1 ? PriorityClass::LS : PriorityClass::BE;
    r.prompt = {int32_t(3 + i), 5, 7, int32_t(11 + i), 2, 9};
    r.max_tokens = 4;
    r.arrival_s = 0.003 * double(i) + (r.cls == PriorityClass::LS ? 0.0015 : 0);
    reqs.push_back(r);
  }
  std::vector<TokenEvent> ev;
  size_t next = 0;
  for (int guard = 0; guard < 100000; ++guard) {
    while (next < reqs.size() && reqs[next].arrival_s <= clock.now()) engine.submit(reqs[next++]);
    ev.clear();
    if (!engine.step(ev)) {
      if (next == reqs.size()) break;
      clock.idle_until(reqs[next].arrival_s);
    }
  }
  ASSERT_TRUE(engine.idle());
  ASSERT_GT(engine.num_preemptions(), 0) << "the workload should preempt a BE pass";

  std::vector<trace::RequestTimes> times;
  for (const auto& [id, tm] : engine.timings()) times.push_back(trace::from_timing(tm));
  trace::TraceInfo info;
  info.policy = "priority-expert";
  const auto t = trace::build_trace(info, engine.unit_log(), times);
  const auto by_tid = check_well_formed(json::parse(t.dump()));
  int64_t preempted = 0, slices = 0;
  for (const auto& [tid, v] : by_tid)
    for (const auto& e : v) {
      if (e["name"] == "preempted") {
        ++preempted;
        EXPECT_EQ(e["args"]["class"], "BE") << e;  // LS slots take no BE work; only BE yields here
      } else {
        ++slices;
      }
    }
  EXPECT_EQ(preempted, engine.num_preemptions());
  EXPECT_EQ(slices, int64_t(engine.unit_log().size()));
  int finishes = 0;
  for (const auto& e : t["traceEvents"]) finishes += e["ph"] == "i" && e["name"].get<std::string>().ends_with("finish");
  EXPECT_EQ(finishes, int(reqs.size()));
}
