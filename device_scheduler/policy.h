// Scheduling policies: which slot runs the next work unit.
//
// One source for every dispatcher: the device loop (compiled by nvcc), the
// host dispatcher and the cpu dispatcher (compiled as C++) call the same
// functions on the same slot table. No allocation, no virtual calls, no std
// containers: plain data and QLLM_HD functions.
//
// A pass is a chain of units (DESIGN.md): attn[0], expert[0][0..n0), attn[1],
// ..., head. A slot's cursor names its next unit. The attn unit of a layer
// writes how many experts received tokens (on the GPU: into device memory the
// scheduler reads), and advance() uses it to step the cursor.
//
// Policies (scheduler.policy):
//   fcfs-iteration   a started pass runs to its end; then the oldest pass, of
//                    either class (the iteration-level FCFS baseline)
//   priority-layer   LS passes first; a BE pass yields only at a layer boundary
//                    (before an attn unit or the head)
//   priority-expert  LS passes first; a BE pass yields at any unit boundary
//                    (between two experts too)
// Among passes of the same effective class, a started pass continues before a
// new one starts (no thrashing between LS passes), then the oldest goes first.
//
// Anti-starvation: a BE pass whose batch has waited be_max_wait_ns since it was
// published counts as LS (then FIFO among LS applies, and it is older than any
// LS that arrived after it). So a BE pass waits at most be_max_wait_ns plus
// the LS passes published before its promotion.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QLLM_HD __host__ __device__
#else
#define QLLM_HD
#endif

namespace qllm::sched {

inline constexpr int kMaxSlots = 16;

enum class Policy : uint8_t { FcfsIteration = 0, PriorityLayer = 1, PriorityExpert = 2 };
enum class PriorityClass : uint8_t { LS = 0, BE = 1 };
enum class UnitKind : uint8_t { Attn = 0, Expert = 1, Head = 2, Done = 3 };

struct Cursor {
  UnitKind kind = UnitKind::Attn;
  int16_t layer = 0;
  int16_t expert = 0;  // index into the layer's list of experts that received tokens
};

struct SlotState {
  uint8_t active = 0;   // a published pass that has not finished
  uint8_t started = 0;  // at least one unit of the pass has run
  PriorityClass cls = PriorityClass::BE;
  Cursor cursor;
  uint64_t published_ns = 0;    // when the pass's batch was published
  int32_t layer_experts = 0;    // experts with tokens in cursor.layer (set by its attn unit)
};

struct SlotTable {
  int32_t n_slots = 0;
  int32_t last = -1;  // slot whose unit ran last (-1: none)
  SlotState slot[kMaxSlots];
};

struct PolicyParams {
  Policy policy = Policy::PriorityExpert;
  uint64_t be_max_wait_ns = 0;  // 0: no promotion
};

// LS, or BE promoted by waiting too long.
QLLM_HD inline PriorityClass effective_class(const SlotState& s, uint64_t now_ns,
                                             uint64_t be_max_wait_ns) {
  if (s.cls == PriorityClass::LS) return PriorityClass::LS;
  if (be_max_wait_ns != 0 && now_ns >= s.published_ns && now_ns - s.published_ns >= be_max_wait_ns)
    return PriorityClass::LS;
  return PriorityClass::BE;
}

// True when the slot's next unit starts a layer (or the head): the boundary
// at which priority-layer lets a pass be preempted.
QLLM_HD inline bool at_layer_boundary(const SlotState& s) {
  return !s.started || s.cursor.kind == UnitKind::Attn || s.cursor.kind == UnitKind::Head;
}

// Better candidate: lower effective class, then started, then older, then lower index.
QLLM_HD inline bool better(const SlotTable& t, int a, int b, uint64_t now_ns, const PolicyParams& p) {
  const SlotState& x = t.slot[a];
  const SlotState& y = t.slot[b];
  if (p.policy != Policy::FcfsIteration) {
    const auto cx = effective_class(x, now_ns, p.be_max_wait_ns);
    const auto cy = effective_class(y, now_ns, p.be_max_wait_ns);
    if (cx != cy) return cx < cy;
  }
  if (x.started != y.started) return x.started > y.started;
  if (x.published_ns != y.published_ns) return x.published_ns < y.published_ns;
  return a < b;
}

// The slot whose next unit should run now, or -1 when no pass is active.
QLLM_HD inline int pick_slot(const SlotTable& t, uint64_t now_ns, const PolicyParams& p) {
  const int last = t.last;
  const bool last_running = last >= 0 && last < t.n_slots && t.slot[last].active && t.slot[last].started;
  if (last_running) {
    if (p.policy == Policy::FcfsIteration) return last;  // a started pass runs to its end
    if (p.policy == Policy::PriorityLayer && !at_layer_boundary(t.slot[last])) return last;
  }
  int best = -1;
  for (int i = 0; i < t.n_slots; ++i) {
    if (!t.slot[i].active) continue;
    if (best < 0 || better(t, i, best, now_ns, p)) best = i;
  }
  return best;
}

// Steps the cursor past the unit that just ran. For an attn unit,
// `experts_with_tokens` is the count that unit produced (0 is allowed: the
// layer's MoE block then has no unit). Returns true when the pass finished.
QLLM_HD inline bool advance(SlotState& s, int num_layers, int experts_with_tokens) {
  s.started = 1;
  Cursor& c = s.cursor;
  auto next_layer = [&]() {
    if (c.layer + 1 < num_layers) {
      c.kind = UnitKind::Attn;
      c.layer = static_cast<int16_t>(c.layer + 1);
      c.expert = 0;
    } else {
      c.kind = UnitKind::Head;
    }
  };
  switch (c.kind) {
    case UnitKind::Attn:
      s.layer_experts = experts_with_tokens;
      c.expert = 0;
      if (experts_with_tokens > 0) c.kind = UnitKind::Expert;
      else next_layer();
      return false;
    case UnitKind::Expert:
      if (c.expert + 1 < s.layer_experts) c.expert = static_cast<int16_t>(c.expert + 1);
      else next_layer();
      return false;
    case UnitKind::Head:
      c.kind = UnitKind::Done;
      s.active = 0;
      return true;
    case UnitKind::Done:
      return true;
  }
  return true;
}

// Loads a new pass into a free slot.
QLLM_HD inline void publish(SlotState& s, PriorityClass cls, uint64_t now_ns) {
  s.active = 1;
  s.started = 0;
  s.cls = cls;
  s.cursor = Cursor{};
  s.published_ns = now_ns;
  s.layer_experts = 0;
}

}  // namespace qllm::sched
