#include "profiling/trace_export.h"

#include "engine/common/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

namespace qllm::trace {
namespace {

using json = nlohmann::json;

constexpr int kPid = 1;
constexpr int kRequestsTid = 2;
constexpr int kFirstSlotTid = 10;  // slot N: tid 10 + N (no tid equals the pid)

int slot_tid(int slot) { return kFirstSlotTid + slot; }

bool happened(double t) { return std::isfinite(t) && t >= 0; }

// Engine seconds to trace microseconds, on a whole-nanosecond grid. Perfetto
// reads a fractional ts as int64(ts * 1000) nanoseconds, truncating: the
// double is nudged up where needed so that this gives back exactly `ns`, and
// a unit's end (ts + dur) meets the next unit's ts without a 1 ns overlap
// (which would nest the next slice under it).
int64_t to_ns(double s) { return std::llround(s * 1e9); }
double ns_to_us(int64_t ns) {
  double us = double(ns) / 1e3;
  while (us * 1e3 < double(ns)) us = std::nextafter(us, HUGE_VAL);
  return us;
}

const char* class_name(sched::PriorityClass c) { return c == sched::PriorityClass::LS ? "LS" : "BE"; }

const char* kind_name(sched::UnitKind k) {
  switch (k) {
    case sched::UnitKind::Attn: return "attn";
    case sched::UnitKind::Expert: return "expert";
    case sched::UnitKind::Head: return "head";
    case sched::UnitKind::Done: return "done";
  }
  return "unit";
}

std::string unit_name(const sched::Cursor& c) {
  switch (c.kind) {
    case sched::UnitKind::Attn: return fmt::format("attn L{}", c.layer);
    case sched::UnitKind::Expert: return fmt::format("expert L{} #{}", c.layer, c.expert);
    default: return kind_name(c.kind);
  }
}

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::Stop: return "stop";
    case Finish::Length: return "length";
    case Finish::Cancelled: return "cancelled";
    case Finish::None: return "";
  }
  return "";
}

json metadata(const char* name, int tid, json args) {
  return {{"ph", "M"}, {"name", name}, {"pid", kPid}, {"tid", tid}, {"args", std::move(args)}};
}

json complete(std::string name, const char* cat, int tid, int64_t start_ns, int64_t end_ns, json args) {
  return {{"ph", "X"},
          {"name", std::move(name)},
          {"cat", cat},
          {"pid", kPid},
          {"tid", tid},
          {"ts", ns_to_us(start_ns)},
          {"dur", ns_to_us(std::max<int64_t>(0, end_ns - start_ns))},
          {"args", std::move(args)}};
}

}  // namespace

RequestTimes from_timing(const RequestTiming& t) {
  RequestTimes r;
  r.id = t.id;
  r.cls = t.cls;
  r.arrival_s = t.arrival_s;
  r.first_scheduled_s = t.first_scheduled_s;
  r.first_token_s = t.first_token_s;
  r.finish_s = t.finish_s;
  r.prompt_tokens = t.prompt_tokens;
  r.output_tokens = t.output_tokens;
  r.preemptions = t.preemptions;
  r.finish = finish_name(t.finish);
  return r;
}

RequestTimes from_record(const workload::RequestRecord& rec) {
  RequestTimes r;
  r.id = uint64_t(rec.id);
  r.cls = rec.cls == workload::RequestClass::LS ? sched::PriorityClass::LS : sched::PriorityClass::BE;
  r.arrival_s = rec.arrival_s;
  r.first_scheduled_s = rec.first_scheduled_s;
  r.first_token_s = rec.first_token_s;
  r.finish_s = rec.finish_s;
  r.prompt_tokens = rec.prompt_tokens;
  r.output_tokens = rec.output_tokens;
  r.preemptions = rec.preemptions;
  r.finish = rec.finished_ok ? "ok" : rec.error;
  return r;
}

json build_trace(const TraceInfo& info, const std::vector<UnitRecord>& units,
                 const std::vector<RequestTimes>& requests) {
  int n_slots = std::max(0, info.ls_slots) + std::max(0, info.be_slots);
  for (const auto& u : units) n_slots = std::max(n_slots, u.slot + 1);
  auto slot_class = [&](int slot) { return slot < info.ls_slots ? "LS" : "BE"; };

  json meta = json::array();
  meta.push_back(metadata("process_name", 0, {{"name", fmt::format("qllm engine ({}, {})", info.dispatcher,
                                                                      info.policy)}}));
  meta.push_back(metadata("process_sort_index", 0, {{"sort_index", 0}}));
  meta.push_back(metadata("thread_name", kRequestsTid, {{"name", "requests"}}));
  meta.push_back(metadata("thread_sort_index", kRequestsTid, {{"sort_index", 0}}));
  for (int s = 0; s < n_slots; ++s) {
    meta.push_back(metadata("thread_name", slot_tid(s), {{"name", fmt::format("slot {} ({})", s, slot_class(s))}}));
    meta.push_back(metadata("thread_sort_index", slot_tid(s), {{"sort_index", 1 + s}}));
  }

  // Events with their time; sorted once at the end, requests (arrivals,
  // counters) before the units that start at the same instant.
  struct Timed {
    int64_t ts_ns;
    int rank;  // 0: requests track, 1: slot tracks
    json event;
  };
  std::vector<Timed> events;

  // Units and preemption gaps, per slot: the pass counter, and the pass's
  // last unit while it is unfinished.
  struct SlotState {
    int64_t pass = 0;
    bool open = false;          // a pass has run a unit and not yet its head
    int64_t last_end_ns = 0;    // end of that unit
    size_t last_index = 0;      // its index in `units`
    int by_slot = -1;           // the slot that ran right after it, if another
  };
  std::vector<SlotState> st(size_t(std::max(n_slots, 0)));
  for (size_t i = 0; i < units.size(); ++i) {
    const UnitRecord& u = units[i];
    if (u.slot < 0) continue;
    SlotState& s = st[size_t(u.slot)];
    const int64_t start = to_ns(u.start_s), end = to_ns(u.end_s);
    if (i > 0) {  // the previous unit's pass was set aside for this one
      const int prev = units[i - 1].slot;
      if (prev >= 0 && prev != u.slot && st[size_t(prev)].open && st[size_t(prev)].by_slot < 0)
        st[size_t(prev)].by_slot = u.slot;
    }
    if (s.open && s.last_index + 1 != i) {
      json args = {{"slot", u.slot},
                   {"class", slot_class(u.slot)},
                   {"pass", s.pass},
                   {"by_slot", s.by_slot},
                   {"units", int64_t(i - s.last_index - 1)}};
      events.push_back({s.last_end_ns, 1,
                        complete("preempted", "preemption", slot_tid(u.slot), s.last_end_ns, start, std::move(args))});
    }
    const auto& c = u.unit;
    const bool attn = c.kind == sched::UnitKind::Attn, expert = c.kind == sched::UnitKind::Expert;
    json args = {{"slot", u.slot},
                 {"class", slot_class(u.slot)},
                 {"layer", attn || expert ? int(c.layer) : -1},
                 {"expert", expert ? int(c.expert) : -1},
                 {"pass", s.pass}};
    if (u.pass_id != 0) args["pass_id"] = u.pass_id;  // the device dispatcher's engine-wide pass id
    events.push_back(
        {start, 1, complete(unit_name(c), kind_name(c.kind), slot_tid(u.slot), start, end, std::move(args))});
    if (c.kind == sched::UnitKind::Head || c.kind == sched::UnitKind::Done) {
      s.open = false;
      ++s.pass;
    } else {
      s.open = true;
      s.last_end_ns = end;
      s.last_index = i;
    }
    s.by_slot = -1;
  }

  // Request instants and the waiting counters.
  std::map<int64_t, int> delta[2];  // per class: time -> change in waiting requests
  for (const auto& r : requests) {
    const char* cls = class_name(r.cls);
    auto instant = [&](const char* what, double t, json extra) {
      if (!happened(t)) return;
      json args = {{"id", r.id}, {"class", cls}};
      args.update(extra);
      json e = {{"ph", "i"},
                {"s", "t"},  // scoped to the requests track
                {"name", fmt::format("{} {}", cls, what)},
                {"cat", "request"},
                {"pid", kPid},
                {"tid", kRequestsTid},
                {"ts", ns_to_us(to_ns(t))},
                {"args", std::move(args)}};
      events.push_back({to_ns(t), 0, std::move(e)});
    };
    instant("arrival", r.arrival_s, {{"prompt_tokens", r.prompt_tokens}});
    instant("first token", r.first_token_s,
            happened(r.arrival_s) ? json{{"ttft_ms", (r.first_token_s - r.arrival_s) * 1e3}} : json::object());
    instant("finish", r.finish_s,
            {{"finish", r.finish}, {"output_tokens", r.output_tokens}, {"preemptions", r.preemptions}});
    if (happened(r.arrival_s)) {
      auto& d = delta[int(r.cls)];
      d[to_ns(r.arrival_s)] += 1;
      const double left = happened(r.first_scheduled_s) ? r.first_scheduled_s : r.finish_s;
      if (happened(left)) d[to_ns(std::max(left, r.arrival_s))] -= 1;
    }
  }
  for (auto cls : {sched::PriorityClass::LS, sched::PriorityClass::BE}) {
    const std::string name = fmt::format("{} waiting", class_name(cls));
    int64_t n = 0;
    for (const auto& [ts, change] : delta[int(cls)]) {
      n += change;
      json e = {{"ph", "C"},
                {"name", name},
                {"pid", kPid},
                {"tid", kRequestsTid},
                {"ts", ns_to_us(ts)},
                {"args", {{"requests", n}}}};
      events.push_back({ts, 0, std::move(e)});
    }
  }

  std::stable_sort(events.begin(), events.end(), [](const Timed& a, const Timed& b) {
    return a.ts_ns != b.ts_ns ? a.ts_ns < b.ts_ns : a.rank < b.rank;
  });
  json all = std::move(meta);
  for (auto& e : events) all.push_back(std::move(e.event));

  json other = {{"dispatcher", info.dispatcher},
                {"policy", info.policy},
                {"ls_slots", info.ls_slots},
                {"be_slots", info.be_slots},
                {"clock", "engine clock; ts and dur in microseconds"}};
  if (info.other.is_object()) other.update(info.other);
  return {{"traceEvents", std::move(all)}, {"displayTimeUnit", "ms"}, {"otherData", std::move(other)}};
}

void write_trace(const std::filesystem::path& path, const json& trace) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot open the trace file for writing", path.string());
  out << trace.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  if (!out.flush()) fail("{}: writing the trace failed", path.string());
}

std::filesystem::path trace_path_for(const std::string& prefix, const std::string& policy) {
  std::string p = prefix;
  if (p.size() >= 5 && p.compare(p.size() - 5, 5, ".json") == 0) p.resize(p.size() - 5);
  return p + "-" + policy + ".json";
}

}  // namespace qllm::trace
