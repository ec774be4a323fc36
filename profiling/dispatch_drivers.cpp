#include "profiling/dispatch_drivers.h"

#include "engine/common/error.h"
#include "engine/core/clock.h"

#include <algorithm>
#include <random>
#include <utility>

namespace qllm::bench {
namespace {

// Collects until pass `id` is reported; its units (slot `slot`) go to `mine`.
PassResult wait_pass(PassBackend& b, const Clock& clock, uint64_t id, int slot, std::vector<UnitRecord>& mine) {
  std::vector<PassResult> done;
  std::vector<UnitRecord> units;
  const auto t0 = Steady::now();
  for (;;) {
    done.clear();
    units.clear();
    b.collect(done, units, 1e-3, clock);
    for (const auto& u : units)
      if (u.slot == slot) mine.push_back(u);
    for (auto& r : done) {
      if (r.pass_id != id) fail("device dispatcher: pass {} reported while waiting for pass {}", r.pass_id, id);
      if (r.status != PassStatus::Done)
        fail("device dispatcher: pass {} ended without tokens{}", id, r.error.empty() ? "" : ": " + r.error);
      return std::move(r);
    }
    if (std::chrono::duration<double>(Steady::now() - t0).count() > kPassTimeout)
      fail("device dispatcher: pass {} did not finish within {} s", id, kPassTimeout);
  }
}

class Delays {
 public:
  Delays(const PreemptionOptions& o, uint64_t seed) : rng_(seed), d_(o.delay_lo_ms * 1e-3, o.delay_hi_ms * 1e-3) {}
  double next() { return d_(rng_); }

 private:
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> d_;
};

uint64_t ns_of(double s) { return uint64_t(std::max(0.0, s) * 1e9); }

// Counts what a preemption run keeps: samples after the warm-up, and the BE
// passes that finished while sampling.
class SampleBook {
 public:
  SampleBook(const PreemptionOptions& o, const Clock& clock) : o_(o), clock_(clock), t_start_(clock.now()) {}
  // An LS pass ended; true when it is kept (past the warm-up).
  bool ls_done() {
    ++ls_;
    if (ls_ == o_.warmup) {
      t_start_ = clock_.now();
      be_ = 0;
    }
    return ls_ > o_.warmup;
  }
  bool sampling() const { return ls_ >= o_.warmup; }
  bool finished() const { return ls_ >= o_.warmup + o_.samples; }
  void be_done() { ++be_; }
  void close(PreemptionRun& run) const {
    run.be_passes = be_;
    run.seconds = clock_.now() - t_start_;
  }

 private:
  const PreemptionOptions& o_;
  const Clock& clock_;
  int ls_ = 0;
  int64_t be_ = 0;
  double t_start_;
};

}  // namespace

double ms_between(Steady::time_point a, Steady::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The pass's KV blocks moved up by `first` (the spans keep pointing into p.tables).
void offset_blocks(PassInput& p, int first) {
  for (auto& t : p.tables)
    for (auto& b : t) b += first;
}

// One pass through the host dispatcher alone in its slot, as Engine::step_units
// drives it. Returns the units run (attn, expert, head).
int host_engine_pass(UnitBackend& b, int slot, const PassInput& p) {
  b.begin(slot, p.chunks, p.sampling);
  sched::SlotTable t;
  t.n_slots = kSlots;
  sched::publish(t.slot[slot], PriorityClass::LS, 0);
  const sched::PolicyParams params{};
  const int layers = b.desc().layers;
  int units = 0;
  while (t.slot[slot].active) {
    const int pick = sched::pick_slot(t, 0, params);
    const int n = b.run(pick, t.slot[pick].cursor);
    sched::advance(t.slot[pick], layers, n);
    t.last = pick;
    ++units;
  }
  (void)b.sampled(slot);
  return units;
}

Timing time_device_passes(PassBackend& b, const PassInput& p, int warmup, int reps, uint64_t& next_id) {
  Timing t;
  WallClock clock;
  b.attach(sched::PolicyParams{}, clock);  // one slot: the policy does not matter
  std::vector<UnitRecord> mine;
  for (int i = 0; i < warmup + reps; ++i) {
    mine.clear();
    const uint64_t id = next_id++;
    const auto t0 = Steady::now();
    b.publish(kLs, id, PriorityClass::LS, p.chunks, p.sampling);
    const PassResult r = wait_pass(b, clock, id, kLs, mine);
    const auto t1 = Steady::now();
    if (i < warmup) continue;
    t.wall_ms.push_back(ms_between(t0, t1));
    if (!mine.empty() && r.taken_s >= 0) t.span_ms.push_back((mine.back().end_s - r.taken_s) * 1e3);
    const int units = int(mine.size());
    if (t.units != 0 && units != t.units) t.units_vary = true;
    t.units = std::max(t.units, units);
  }
  return t;
}


PreemptionRun host_preemption(UnitBackend& b, sched::Policy policy, const PassInput& ls,
                              const PassInput& be, const PreemptionOptions& o) {
  WallClock clock;
  Delays delays(o, o.seed * 7919 + 1);
  SampleBook book(o, clock);
  sched::SlotTable t;
  t.n_slots = kSlots;
  sched::PolicyParams params;
  params.policy = policy;
  const int layers = b.desc().layers;
  PreemptionRun run;
  bool ls_first_pending = false;
  Sample cur;
  double next_ls = clock.now() + delays.next(), be_begin = 0;
  bool be_preempted = false;
  for (;;) {
    const bool more = !book.finished();
    if (more && !t.slot[kBe].active) {
      be_begin = clock.now();
      be_preempted = false;
      b.begin(kBe, be.chunks, be.sampling);
      sched::publish(t.slot[kBe], PriorityClass::BE, ns_of(clock.now()));
    }
    const double now = clock.now();
    if (more && !t.slot[kLs].active && now >= next_ls) {
      cur = Sample{};
      cur.arrival_s = next_ls;
      cur.noticed_s = now;
      cur.be_running = t.slot[kBe].active && t.slot[kBe].started;
      b.begin(kLs, ls.chunks, ls.sampling);
      sched::publish(t.slot[kLs], PriorityClass::LS, ns_of(clock.now()));
      ls_first_pending = true;
    }
    // As Engine::step_units: the policy picks the slot before every unit.
    const int pick = sched::pick_slot(t, ns_of(clock.now()), params);
    if (pick < 0) break;  // after the last sample, once the BE pass in flight ended
    if (pick == kLs && ls_first_pending) {
      cur.first_s = clock.now();
      ls_first_pending = false;
    }
    if (pick == kLs && t.slot[kBe].active && t.slot[kBe].started && !be_preempted) {
      be_preempted = true;
      if (book.sampling()) ++run.be_preempted;
    }
    const int n = b.run(pick, t.slot[pick].cursor);
    sched::advance(t.slot[pick], layers, n);
    t.last = pick;
    if (t.slot[pick].active) continue;
    (void)b.sampled(pick);
    if (pick == kBe) {
      if (book.sampling()) {
        book.be_done();
        run.be_pass_ms.push_back((clock.now() - be_begin) * 1e3);
      }
    } else {
      if (book.ls_done()) run.samples.push_back(cur);
      next_ls = clock.now() + delays.next();
    }
  }
  book.close(run);
  return run;
}

PreemptionRun device_preemption(PassBackend& b, sched::Policy policy, const PassInput& ls, const PassInput& be,
                                const PreemptionOptions& o, uint64_t& next_id) {
  WallClock clock;
  sched::PolicyParams params;
  params.policy = policy;  // no BE promotion
  b.attach(params, clock);
  Delays delays(o, o.seed * 7919 + 1);
  SampleBook book(o, clock);
  PreemptionRun run;
  uint64_t ls_id = 0, be_id = 0;
  bool be_started = false, ls_first_seen = false, be_head_seen = false, be_preempted = false;
  double be_last_end = -1;
  Sample cur;
  // Per collect() call that drained units: the host time after it and the
  // latest end among them (mapped); their difference bounds the offset.
  struct Drain {
    double host_s, mapped_end_s;
  };
  std::vector<Drain> drains;
  std::vector<std::pair<size_t, size_t>> windows;  // per kept sample: the drains while its LS pass ran
  size_t ls_pub_drain = 0;
  double next_ls = clock.now() + delays.next();
  std::vector<PassResult> done;
  std::vector<UnitRecord> units;
  auto last_progress = Steady::now();
  for (;;) {
    const bool more = !book.finished();
    if (!more && be_id == 0 && ls_id == 0) break;
    if (more && be_id == 0) {
      be_id = next_id++;
      be_started = false;
      be_head_seen = false;
      be_preempted = false;
      be_last_end = -1;
      b.publish(kBe, be_id, PriorityClass::BE, be.chunks, be.sampling);
    }
    if (more && ls_id == 0 && clock.now() >= next_ls) {
      cur = Sample{};
      cur.arrival_s = next_ls;
      cur.be_running = be_id != 0 && be_started;
      ls_id = next_id++;
      ls_first_seen = false;
      ls_pub_drain = drains.size();
      cur.noticed_s = clock.now();  // right before publish (which stages the metadata)
      b.publish(kLs, ls_id, PriorityClass::LS, ls.chunks, ls.sampling);
    }
    done.clear();
    units.clear();
    // Until the next arrival at most: the arrival is published on time.
    const double wait = ls_id != 0 || !more ? 1e-3 : std::clamp(next_ls - clock.now(), 0.0, 1e-3);
    b.collect(done, units, wait, clock);
    const double after = clock.now();
    if (!units.empty()) {
      double latest = units.front().end_s;
      for (const auto& u : units) latest = std::max(latest, u.end_s);
      drains.push_back({after, latest});
    }
    for (const auto& u : units) {  // in the order the loop ran them
      if (u.slot == kLs && ls_id != 0 && !ls_first_seen) {
        cur.first_s = u.start_s;
        ls_first_seen = true;
      }
      if (u.slot == kLs && be_id != 0 && be_started && !be_head_seen && !be_preempted) {
        be_preempted = true;
        if (book.sampling()) ++run.be_preempted;
      }
      if (u.slot == kBe) {
        be_started = true;
        be_head_seen = be_head_seen || u.unit.kind == sched::UnitKind::Head;
        be_last_end = std::max(be_last_end, u.end_s);
      }
    }
    for (const auto& r : done) {
      last_progress = Steady::now();
      if (r.status != PassStatus::Done)
        fail("device dispatcher: pass {} (slot {}) ended without tokens{}", r.pass_id, r.slot,
             r.error.empty() ? "" : ": " + r.error);
      if (r.slot == kBe) {
        QLLM_CHECK_MSG(r.pass_id == be_id, "BE pass {} reported, {} expected", r.pass_id, be_id);
        if (book.sampling()) {
          book.be_done();
          if (r.taken_s >= 0 && be_last_end >= 0) run.be_pass_ms.push_back((be_last_end - r.taken_s) * 1e3);
        }
        be_id = 0;
        continue;
      }
      QLLM_CHECK_MSG(r.slot == kLs && r.pass_id == ls_id, "pass {} (slot {}) reported, LS pass {} expected",
                     r.pass_id, r.slot, ls_id);
      cur.taken_s = r.taken_s;
      if (book.ls_done()) {
        if (!ls_first_seen || r.taken_s < 0) {
          ++run.missing_first;
        } else {
          run.samples.push_back(cur);
          windows.emplace_back(ls_pub_drain, drains.size());
        }
      }
      ls_id = 0;
      next_ls = clock.now() + delays.next();
    }
    if (std::chrono::duration<double>(Steady::now() - last_progress).count() > kPassTimeout)
      fail("device dispatcher: no pass finished for {} s", kPassTimeout);
  }
  book.close(run);

  // Re-map each sample with the drains made while its LS pass ran.
  double lo = 0, hi = 0;
  for (size_t i = 0; i < run.samples.size(); ++i) {
    double off = 0;
    bool have = false;
    for (size_t k = windows[i].first; k < windows[i].second && k < drains.size(); ++k) {
      off = have ? std::max(off, drains[k].mapped_end_s - drains[k].host_s) : drains[k].mapped_end_s - drains[k].host_s;
      have = true;
    }
    QLLM_CHECK_MSG(have, "sample {}: no units drained while its LS pass ran", i);
    Sample& s = run.samples[i];
    s.offset_s = off;
    s.first_s -= off;
    s.taken_s -= off;
    lo = i ? std::min(lo, off) : off;
    hi = i ? std::max(hi, off) : off;
  }
  run.offset_spread_s = hi - lo;
  return run;
}

}  // namespace qllm::bench
