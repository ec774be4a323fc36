// The scheduling policies on the CPU with a fake clock: one unit takes one
// tick, and a simulated dispatcher asks pick_slot() before every unit, as the
// device loop does.
#include "device_scheduler/policy.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace qllm::sched;

namespace {

constexpr int kLayers = 4;
constexpr int kExperts = 3;  // experts with tokens in every layer

struct Ran {
  int slot;
  Cursor unit;
  uint64_t t;
};

// Runs until every slot is idle. `arrivals[t]` publishes (slot, class) at tick t.
struct Sim {
  SlotTable table;
  PolicyParams params;
  uint64_t now = 0;
  std::vector<Ran> log;
  std::multimap<uint64_t, std::pair<int, PriorityClass>> arrivals;

  explicit Sim(Policy p, int slots = 2) {
    table.n_slots = slots;
    params.policy = p;
  }
  void run(uint64_t limit = 100000) {
    while (now < limit) {
      for (auto it = arrivals.begin(); it != arrivals.end() && it->first <= now;) {
        publish(table.slot[it->second.first], it->second.second, now);
        it = arrivals.erase(it);
      }
      const int s = pick_slot(table, now, params);
      if (s < 0) {
        if (arrivals.empty()) return;
        now = arrivals.begin()->first;
        continue;
      }
      log.push_back({s, table.slot[s].cursor, now});
      advance(table.slot[s], kLayers, kExperts);
      table.last = s;
      ++now;
    }
  }
  // Tick at which `slot` ran its first unit at or after tick `from`.
  uint64_t first_unit(int slot, uint64_t from) const {
    for (const auto& r : log)
      if (r.slot == slot && r.t >= from) return r.t;
    return ~uint64_t(0);
  }
  std::vector<std::string> units_of(int slot) const {
    std::vector<std::string> out;
    for (const auto& r : log)
      if (r.slot == slot)
        out.push_back(std::to_string(int(r.unit.kind)) + ":" + std::to_string(r.unit.layer) + ":" +
                      std::to_string(r.unit.expert));
    return out;
  }
};

constexpr int kUnitsPerPass = kLayers * (1 + kExperts) + 1;

// BE starts at 0 (attn[0] at tick 0, its experts at 1-3, attn[1] at 4); LS
// arrives at tick 5, when BE's next unit is expert 0 of layer 1.
Sim ls_during_be(Policy p) {
  Sim s(p);
  s.arrivals.insert({0, {1, PriorityClass::BE}});
  s.arrivals.insert({5, {0, PriorityClass::LS}});
  s.run();
  return s;
}

}  // namespace

TEST(Policy, PassVisitsEveryUnitOnce) {
  Sim s(Policy::PriorityExpert, 1);
  s.arrivals.insert({0, {0, PriorityClass::BE}});
  s.run();
  ASSERT_EQ(int(s.log.size()), kUnitsPerPass);
  EXPECT_EQ(s.log.front().unit.kind, UnitKind::Attn);
  EXPECT_EQ(s.log.back().unit.kind, UnitKind::Head);
  EXPECT_FALSE(s.table.slot[0].active);
}

TEST(Policy, PriorityExpertPreemptsAtTheNextExpertBoundary) {
  const auto s = ls_during_be(Policy::PriorityExpert);
  EXPECT_EQ(s.first_unit(0, 5), 5u);  // the very next unit
}

TEST(Policy, PriorityLayerWaitsForTheLayerBoundary) {
  const auto s = ls_during_be(Policy::PriorityLayer);
  // BE still runs the three experts of layer 1 (ticks 5-7), then LS starts.
  EXPECT_EQ(s.first_unit(0, 5), 8u);
}

TEST(Policy, FcfsIterationWaitsForTheWholePass) {
  const auto s = ls_during_be(Policy::FcfsIteration);
  EXPECT_EQ(s.first_unit(0, 5), uint64_t(kUnitsPerPass));
}

TEST(Policy, PreemptedPassResumesWhereItStopped) {
  // The BE pass runs the same units in the same order under every policy:
  // preemption only delays it, nothing is skipped or repeated.
  const auto ref = ls_during_be(Policy::FcfsIteration).units_of(1);
  EXPECT_EQ(int(ref.size()), kUnitsPerPass);
  EXPECT_EQ(ls_during_be(Policy::PriorityExpert).units_of(1), ref);
  EXPECT_EQ(ls_during_be(Policy::PriorityLayer).units_of(1), ref);
}

TEST(Policy, StartedPassOfTheSameClassContinues) {
  // Two LS passes: the second does not interrupt the first.
  Sim s(Policy::PriorityExpert);
  s.arrivals.insert({0, {0, PriorityClass::LS}});
  s.arrivals.insert({3, {1, PriorityClass::LS}});
  s.run();
  EXPECT_EQ(s.first_unit(1, 0), uint64_t(kUnitsPerPass));
}

TEST(Policy, OldestFirstAmongNewPasses) {
  Sim s(Policy::PriorityExpert, 3);
  s.arrivals.insert({0, {2, PriorityClass::BE}});
  s.arrivals.insert({0, {0, PriorityClass::LS}});
  s.arrivals.insert({1, {1, PriorityClass::BE}});
  s.run();
  EXPECT_EQ(s.log.front().slot, 0);                        // LS first
  EXPECT_LT(s.first_unit(2, 0), s.first_unit(1, 0));      // then the older BE
}

TEST(Policy, NoStarvationUnderASteadyLsStream) {
  // An LS pass is published every pass-length of ticks, so LS alone keeps the
  // GPU busy. Without promotion BE never finishes; with be_max_wait it does,
  // within the bound the policy states.
  for (const uint64_t wait : {uint64_t(0), uint64_t(40)}) {
    Sim s(Policy::PriorityExpert);
    s.params.be_max_wait_ns = wait;
    s.arrivals.insert({0, {1, PriorityClass::BE}});
    for (uint64_t t = 0; t < 2000; t += kUnitsPerPass) s.arrivals.insert({t, {0, PriorityClass::LS}});
    s.run(1000);
    uint64_t be_done = ~uint64_t(0);
    for (const auto& r : s.log)
      if (r.slot == 1 && r.unit.kind == UnitKind::Head) be_done = r.t;
    if (wait == 0) {
      EXPECT_EQ(be_done, ~uint64_t(0)) << "without promotion a saturating LS stream starves BE";
    } else {
      // Promoted at tick `wait`; it then waits at most for the LS pass that
      // is running (one pass) before running its own pass to the end.
      EXPECT_LE(be_done, wait + 2 * uint64_t(kUnitsPerPass)) << be_done;
    }
  }
}

TEST(Policy, LayerBoundaryDefinition) {
  SlotState s;
  publish(s, PriorityClass::BE, 0);
  EXPECT_TRUE(at_layer_boundary(s));  // not started
  advance(s, kLayers, 2);             // attn[0] ran
  EXPECT_FALSE(at_layer_boundary(s));
  advance(s, kLayers, 0);             // expert 0
  EXPECT_FALSE(at_layer_boundary(s));
  advance(s, kLayers, 0);             // expert 1: layer done
  EXPECT_TRUE(at_layer_boundary(s));
  EXPECT_EQ(s.cursor.layer, 1);
}

TEST(Policy, LayerWithNoRoutedTokensSkipsItsExperts) {
  SlotState s;
  publish(s, PriorityClass::LS, 0);
  advance(s, 2, 0);
  EXPECT_EQ(s.cursor.kind, UnitKind::Attn);
  EXPECT_EQ(s.cursor.layer, 1);
  advance(s, 2, 0);
  EXPECT_EQ(s.cursor.kind, UnitKind::Head);
  EXPECT_TRUE(advance(s, 2, 0));
  EXPECT_FALSE(s.active);
}

TEST(Policy, IdleTableAndStaleLastSlot) {
  SlotTable t;
  t.n_slots = 2;
  EXPECT_EQ(pick_slot(t, 0, {}), -1);
  t.last = 7;  // out of range: ignored
  publish(t.slot[1], PriorityClass::BE, 0);
  EXPECT_EQ(pick_slot(t, 0, {}), 1);
}
