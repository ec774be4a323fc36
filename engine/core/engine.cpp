#include "engine/core/engine.h"

#include "engine/common/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace qllm {

struct Engine::Seq {
  Request req;
  std::vector<int32_t> tokens;  // prompt, then sampled tokens
  int computed = 0;             // positions whose KV is written
  int outputs = 0;
  int in_slot = -1;             // the slot of its passes (-1: in none)
  int passes = 0;               // passes it is in (2: a prompt chunk queued behind the running one)
  int inflight = 0;             // its tokens in those passes (the next chunk starts at computed + inflight)
  bool has_blocks = false;
  bool cancelled = false;  // ends when its last pass finishes
  bool stale = false;      // its queued chunk is stale: no chunk is queued after it
};

struct Engine::Part {
  uint64_t id;
  int n;
  bool logits;
  bool stale = false;  // continues a chunk whose pass ended without it: computed on bad KV, dropped
};

struct Engine::PassWork {
  uint64_t id = 0;  // PassBackend pass id (0 over a UnitBackend)
  std::vector<Part> parts;
  bool started = false;  // PassBackend: one of its units was reported
  bool cancel_sent = false;
  sched::Cursor cursor;  // PassBackend: the unit reported last
};

struct Engine::SlotWork {
  PriorityClass cls = PriorityClass::BE;
  // The running pass first; over a PassBackend (queue_prefill) a pass of
  // prompt chunks may be queued behind it.
  std::deque<PassWork> passes;
};

Engine::Engine(Backend& backend, const EngineLimits& limits, Clock& clock)
    : backend_(backend), units_(backend.as_unit_backend()), passes_(backend.as_pass_backend()), lim_(limits),
      clock_(clock) {
  QLLM_CHECK_MSG((units_ != nullptr) != (passes_ != nullptr), "engine: a backend must be a unit or a pass backend");
  if (lim_.ls_slots < 0 || lim_.be_slots < 0 || lim_.ls_slots + lim_.be_slots < 1 ||
      lim_.ls_slots + lim_.be_slots > sched::kMaxSlots)
    fail("engine: {} LS + {} BE slots: need 1 to {} slots in all", lim_.ls_slots, lim_.be_slots,
         sched::kMaxSlots);
  blocks_ = std::make_unique<BlockManager>(lim_.kv_blocks, lim_.block_size);
  table_.n_slots = lim_.ls_slots + lim_.be_slots;
  for (int i = 0; i < table_.n_slots; ++i) {
    slots_.push_back(std::make_unique<SlotWork>());
    slots_.back()->cls = i < lim_.ls_slots ? PriorityClass::LS : PriorityClass::BE;
  }
  if (passes_) {
    sched::PolicyParams p;
    p.policy = lim_.policy;
    p.be_max_wait_ns = uint64_t(std::max(0.0, lim_.be_max_wait_s) * 1e9);
    passes_->attach(p, clock_);
  }
}

Engine::~Engine() = default;

uint64_t Engine::now_ns() const { return uint64_t(std::max(0.0, clock_.now()) * 1e9); }

void Engine::submit(Request r) {
  const auto& d = backend_.desc();
  if (r.prompt.empty()) fail("request {}: the prompt is empty", r.id);
  for (int32_t t : r.prompt)
    if (t < 0 || t >= d.vocab) fail("request {}: token id {} is outside the vocabulary [0, {})", r.id, t, d.vocab);
  if (r.max_tokens < 1) fail("request {}: max_tokens must be at least 1, got {}", r.id, r.max_tokens);
  const int64_t total = int64_t(r.prompt.size()) + r.max_tokens;
  if (total > blocks_->capacity_tokens() || total > d.max_positions)
    fail("request {}: prompt {} + max_tokens {} = {} tokens exceeds the limit of {} (KV cache {} "
         "tokens, model {} positions)", r.id, r.prompt.size(), r.max_tokens, total,
         std::min<int64_t>(blocks_->capacity_tokens(), d.max_positions), blocks_->capacity_tokens(),
         d.max_positions);
  if (seqs_.count(r.id) || timings_.count(r.id)) fail("request {}: duplicate id", r.id);
  if (r.cls == PriorityClass::LS && lim_.ls_slots == 0)
    fail("request {}: latency-sensitive, but the engine has no LS slot", r.id);
  if (r.cls == PriorityClass::BE && lim_.be_slots == 0)
    fail("request {}: best-effort, but the engine has no BE slot", r.id);
  RequestTiming t;
  t.id = r.id;
  t.cls = r.cls;
  t.arrival_s = r.arrival_s;
  t.prompt_tokens = int(r.prompt.size());
  timings_[r.id] = t;
  auto s = std::make_unique<Seq>();
  s->tokens = r.prompt;
  s->req = std::move(r);
  seqs_[s->req.id] = std::move(s);
  batches_may_form_ = true;
}

// A pass queued behind a running one (queued == true) holds prompt chunks
// only: chunks of waiting prompts, and next chunks of prompts whose current
// chunk is in the running pass (it writes their KV before the queued pass
// runs). It forms only while no sequence of the class waits to decode, so
// decode rows are never split from the batch they would join.
bool Engine::form_batch(int slot, bool queued) {
  auto& w = *slots_[size_t(slot)];
  PassWork pass;
  // Candidates of the slot's class, oldest first.
  std::vector<Seq*> cand;
  for (auto& [id, s] : seqs_) {
    Seq* q = s.get();
    if (q->req.cls != w.cls) continue;
    const bool prefill = q->computed + q->inflight < int(q->req.prompt.size());
    if (q->in_slot < 0) {
      if (queued && !prefill) return false;  // a decode row waits: it joins the next full pass
      cand.push_back(q);
    } else if (queued && q->in_slot == slot && q->passes == 1 && prefill && !q->cancelled && !q->stale) {
      cand.push_back(q);  // its next chunk, behind the one running
    }
  }
  std::stable_sort(cand.begin(), cand.end(),
                   [](const Seq* a, const Seq* b) { return a->req.arrival_s < b->req.arrival_s; });
  int tokens = 0;
  std::vector<cpu::SeqChunk> chunks;
  std::vector<SampleSpec> sampling;
  std::vector<std::vector<int32_t>> tables;
  tables.reserve(cand.size());
  auto add = [&](Seq* s, int n, bool logits) {
    if (!s->has_blocks) {
      const int need = int(s->req.prompt.size()) + s->req.max_tokens;
      if (!blocks_->can_allocate(need)) return;  // waits for blocks
      blocks_->allocate(int64_t(s->req.id), need);
      s->has_blocks = true;
    }
    const auto bt = blocks_->block_table(int64_t(s->req.id));
    tables.emplace_back(bt.begin(), bt.end());
    const int start = s->computed + s->inflight;
    chunks.push_back({std::span(s->tokens).subspan(size_t(start), size_t(n)), start, tables.back(), logits});
    pass.parts.push_back({s->req.id, n, logits});
    if (logits) sampling.push_back({s->req.sampling, uint64_t(s->outputs)});
    tokens += n;
    auto& t = timings_[s->req.id];
    if (t.first_scheduled_s < 0) t.first_scheduled_s = clock_.now();
  };
  const int prompt_len_limit = lim_.prefill_chunk;
  for (int phase = 0; phase < 2; ++phase) {  // decode tokens first, then prompt chunks
    for (Seq* s : cand) {
      if (int(pass.parts.size()) >= lim_.max_seqs_per_step || tokens >= lim_.max_tokens_per_step) break;
      const int prompt = int(s->req.prompt.size());
      const int start = s->computed + s->inflight;
      const bool decoding = start >= prompt;
      if (decoding != (phase == 0)) continue;
      if (decoding) {
        add(s, 1, true);
      } else {
        const int n = std::min({prompt - start, prompt_len_limit, lim_.max_tokens_per_step - tokens});
        add(s, n, start + n == prompt);
      }
    }
  }
  if (pass.parts.empty()) return false;
  if (units_) {
    units_->begin(slot, chunks, sampling);
  } else {
    pass.id = ++next_pass_id_;
    passes_->publish(slot, pass.id, w.cls, chunks, sampling);  // throws: nothing was handed over
  }
  for (const auto& part : pass.parts) {
    Seq& s = *seqs_.at(part.id);
    s.in_slot = slot;
    s.passes += 1;
    s.inflight += part.n;
  }
  w.passes.push_back(std::move(pass));
  if (w.passes.size() == 1) sched::publish(table_.slot[slot], w.cls, now_ns());
  return true;
}

void Engine::run_unit(int slot) {
  auto& st = table_.slot[slot];
  const auto c = st.cursor;
  int experts = 0;
  switch (c.kind) {
    case sched::UnitKind::Attn:
    case sched::UnitKind::Expert:
    case sched::UnitKind::Head:
      experts = units_->run(slot, c);
      break;
    case sched::UnitKind::Done:
      QLLM_CHECK_MSG(false, "slot {} scheduled with no unit left", slot);
  }
  sched::advance(st, backend_.desc().layers, experts);
}

// Takes one part of the slot's front pass off its sequence; true when the
// sequence is in no other pass (it is the slot's no longer).
bool Engine::leave_pass(Seq& s, const Part& part) {
  s.passes -= 1;
  s.inflight -= part.n;
  if (part.stale) s.stale = false;
  QLLM_CHECK(s.passes >= 0 && s.inflight >= 0);
  if (s.passes == 0) s.in_slot = -1;
  return s.passes == 0;
}

// The slot's front pass ended with `sampled` (one token per part with logits).
void Engine::finish_pass(int slot, std::vector<TokenEvent>& out, const std::vector<int32_t>& sampled) {
  auto& w = *slots_[size_t(slot)];
  QLLM_CHECK(!w.passes.empty());
  const PassWork pass = std::move(w.passes.front());
  w.passes.pop_front();
  size_t row = 0;
  const double now = clock_.now();
  for (const auto& part : pass.parts) {
    auto it = seqs_.find(part.id);
    QLLM_CHECK(it != seqs_.end());
    Seq& s = *it->second;
    int32_t tok = -1;
    if (part.logits) {
      QLLM_CHECK_MSG(row < sampled.size(), "slot {}: the backend sampled {} tokens for more chunks", slot,
                     sampled.size());
      tok = sampled[row++];
    }
    const bool last = leave_pass(s, part);
    if (s.cancelled) {
      if (last) {
        end_request(part.id, Finish::Cancelled, now);
        out.push_back({part.id, -1, now, Finish::Cancelled});
      }
      continue;
    }
    if (part.stale) continue;  // the chunk before it failed: both run again
    blocks_->mark_computed(int64_t(s.req.id), std::span(s.tokens).subspan(size_t(s.computed), size_t(part.n)));
    s.computed += part.n;
    if (!part.logits) continue;
    QLLM_CHECK_MSG(last, "slot {}: request {} sampled with a pass queued behind", slot, part.id);
    auto& t = timings_[s.req.id];
    Finish fin = Finish::None;
    if (std::find(s.req.stop_ids.begin(), s.req.stop_ids.end(), tok) != s.req.stop_ids.end()) {
      fin = Finish::Stop;
      out.push_back({s.req.id, -1, now, fin});
    } else {
      s.tokens.push_back(tok);
      ++s.outputs;
      if (t.first_token_s < 0) t.first_token_s = now;
      t.token_times_s.push_back(now);
      t.output_tokens = s.outputs;
      if (s.outputs >= s.req.max_tokens) fin = Finish::Length;
      out.push_back({s.req.id, tok, now, fin});
    }
    if (fin != Finish::None) end_request(part.id, fin, now);
  }
  batches_may_form_ = true;
}

// The slot's front pass ended without tokens: cancelled sequences end (once
// in no other pass), the others are back to what they had computed before
// it; a next chunk of theirs queued behind it is stale (dropped when its
// pass ends, and computed again).
void Engine::abort_pass(int slot, std::vector<TokenEvent>& out) {
  auto& w = *slots_[size_t(slot)];
  QLLM_CHECK(!w.passes.empty());
  const PassWork pass = std::move(w.passes.front());
  w.passes.pop_front();
  const double now = clock_.now();
  for (const auto& part : pass.parts) {
    auto it = seqs_.find(part.id);
    QLLM_CHECK(it != seqs_.end());
    Seq& s = *it->second;
    for (auto& next : w.passes)
      for (auto& p : next.parts)
        if (p.id == part.id) p.stale = s.stale = true;
    if (leave_pass(s, part) && s.cancelled) {
      end_request(part.id, Finish::Cancelled, now);
      out.push_back({part.id, -1, now, Finish::Cancelled});
    }
  }
  batches_may_form_ = true;
}

void Engine::end_request(uint64_t id, Finish fin, double now) {
  auto it = seqs_.find(id);
  QLLM_CHECK(it != seqs_.end());
  auto& t = timings_[id];
  t.finish = fin;
  t.finish_s = now;
  if (it->second->has_blocks) blocks_->free(int64_t(id));
  seqs_.erase(it);
  batches_may_form_ = true;  // blocks came back
}

bool Engine::cancel(uint64_t id, std::vector<TokenEvent>& out) {
  auto it = seqs_.find(id);
  if (it == seqs_.end() || it->second->cancelled) return false;
  Seq& s = *it->second;
  if (s.in_slot >= 0) {  // its passes still write s's KV blocks: end it with the last of them
    s.cancelled = true;
    if (passes_)  // a pass of cancelled sequences only: stop it at its next unit
      for (auto& pass : slots_[size_t(s.in_slot)]->passes) {
        const bool all = std::all_of(pass.parts.begin(), pass.parts.end(),
                                     [&](const Part& p) { return seqs_.at(p.id)->cancelled; });
        if (all && !pass.cancel_sent) {
          passes_->cancel(pass.id);
          pass.cancel_sent = true;
        }
      }
    return true;
  }
  const double now = clock_.now();
  end_request(id, Finish::Cancelled, now);
  out.push_back({id, -1, now, Finish::Cancelled});
  return true;
}

std::optional<RequestTiming> Engine::release_timing(uint64_t id) {
  auto it = timings_.find(id);
  if (it == timings_.end() || it->second.finish == Finish::None) return std::nullopt;
  RequestTiming t = std::move(it->second);
  timings_.erase(it);
  return t;
}

void Engine::log_unit(const UnitRecord& rec) {
  log_.push_back(rec);
  if (log_.size() > 2 * log_limit_)  // amortised trim to the newest log_limit_ records
    log_.erase(log_.begin(), log_.end() - std::ptrdiff_t(log_limit_));
}

// The pass in `slot` was set aside for another slot's unit.
void Engine::count_preemption(int slot, const PassWork& pass) {
  ++preemptions_;
  ++class_preemptions_[int(slots_[size_t(slot)]->cls)];
  for (const auto& part : pass.parts) ++timings_[part.id].preemptions;
}

bool Engine::step(std::vector<TokenEvent>& out) {
  if (batches_may_form_) {
    batches_may_form_ = false;
    for (int i = 0; i < table_.n_slots; ++i)
      if (slots_[size_t(i)]->passes.empty()) form_batch(i, false);
    if (passes_ && lim_.queue_prefill)  // then, behind running passes, what no free slot took
      for (int i = 0; i < table_.n_slots; ++i)
        if (slots_[size_t(i)]->passes.size() == 1) form_batch(i, true);
  }
  return units_ ? step_units(out) : step_passes(out);
}

bool Engine::step_units(std::vector<TokenEvent>& out) {
  sched::PolicyParams p;
  p.policy = lim_.policy;
  p.be_max_wait_ns = uint64_t(lim_.be_max_wait_s * 1e9);
  const int pick = sched::pick_slot(table_, now_ns(), p);
  if (pick < 0) return false;
  const int last = table_.last;
  if (last >= 0 && last != pick && table_.slot[last].active && table_.slot[last].started)
    count_preemption(last, slots_[size_t(last)]->passes.front());
  UnitRecord rec{pick, table_.slot[pick].cursor, clock_.now(), 0};
  const auto t0 = std::chrono::steady_clock::now();
  run_unit(pick);
  clock_.unit_ran(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  rec.end_s = clock_.now();
  log_unit(rec);
  table_.last = pick;
  if (!table_.slot[pick].active) finish_pass(pick, out, units_->sampled(pick));
  return true;
}

// Over a PassBackend, the backend reports the units that ran (each naming
// its pass) and the passes that ended, a slot's passes in order. A pass was
// set aside (preempted) when a unit of another slot ran after one of its
// units and before its head.
bool Engine::step_passes(std::vector<TokenEvent>& out) {
  bool any = false;
  for (const auto& w : slots_) any = any || !w->passes.empty();
  if (!any) return false;
  results_.clear();
  units_ran_.clear();
  passes_->collect(results_, units_ran_, pass_wait_s_, clock_);
  auto find = [&](int slot, uint64_t id) -> PassWork* {
    if (slot < 0 || slot >= table_.n_slots) return nullptr;
    for (auto& p : slots_[size_t(slot)]->passes)
      if (p.id == id) return &p;
    return nullptr;
  };
  for (const UnitRecord& u : units_ran_) {
    PassWork* p = find(u.slot, u.pass_id);
    if (!p) continue;  // a pass already reported (a record the ring delayed)
    PassWork* last = find(last_unit_slot_, last_unit_pass_);
    if (last && last != p && last->started && last->cursor.kind != sched::UnitKind::Head &&
        last_unit_slot_ != u.slot)
      count_preemption(last_unit_slot_, *last);
    p->started = true;
    p->cursor = u.unit;
    last_unit_slot_ = u.slot;
    last_unit_pass_ = u.pass_id;
    log_unit(u);
  }
  std::string failure;  // thrown once every result is taken in
  for (const PassResult& r : results_) {
    QLLM_CHECK_MSG(r.slot >= 0 && r.slot < table_.n_slots && !slots_[size_t(r.slot)]->passes.empty() &&
                       slots_[size_t(r.slot)]->passes.front().id == r.pass_id,
                   "pass backend: a result for pass {} in slot {}, which does not run it", r.pass_id, r.slot);
    if (r.status == PassStatus::Done) {
      finish_pass(r.slot, out, r.tokens);
    } else {
      abort_pass(r.slot, out);
      if (r.status == PassStatus::Failed && failure.empty())
        failure = fmt::format("device dispatcher, slot {}: {}", r.slot, r.error);
    }
  }
  if (!failure.empty()) throw Error(failure);
  return true;
}

bool Engine::idle() const { return seqs_.empty(); }

Engine::ClassCounts Engine::class_counts() const {
  ClassCounts c;
  for (const auto& [id, s] : seqs_) {
    const bool waiting = s->computed == 0 && s->in_slot < 0;
    ++(waiting ? c.waiting : c.running)[int(s->req.cls)];
  }
  return c;
}

int Engine::num_waiting() const {
  const auto c = class_counts();
  return c.waiting[0] + c.waiting[1];
}

int Engine::num_running() const { return int(seqs_.size()) - num_waiting(); }
int Engine::num_waiting(PriorityClass cls) const { return class_counts().waiting[int(cls)]; }
int Engine::num_running(PriorityClass cls) const { return class_counts().running[int(cls)]; }

}  // namespace qllm
