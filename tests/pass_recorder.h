// A PassBackend that forwards to another and keeps what went through it:
// every published pass (slot, id, class, chunks, sampling, whether it was
// queued behind a running one) in publish order and every result.
// `on_result` runs as each result comes in, before the engine can publish
// another pass (with no pass queued behind, the GPU tests read the slot's
// logits there).
#pragma once

#include "engine/core/unit_backend.h"

#include <functional>
#include <map>
#include <vector>

namespace qllm::test {

struct RecordedPass {
  int slot = -1;
  uint64_t id = 0;
  PriorityClass cls = PriorityClass::BE;
  std::vector<std::vector<int32_t>> tokens;  // per chunk
  std::vector<int> pos;
  std::vector<std::vector<int32_t>> tables;
  std::vector<bool> logits;
  std::vector<SampleSpec> sampling;
  bool queued = false;  // published while an earlier pass of its slot had not ended
  PassResult result;    // once it came in (slot -1 until then)

  std::vector<cpu::SeqChunk> chunks() const {
    std::vector<cpu::SeqChunk> c;
    for (size_t i = 0; i < tokens.size(); ++i) c.push_back({tokens[i], pos[i], tables[i], logits[i]});
    return c;
  }
};

class PassRecorder final : public PassBackend {
 public:
  explicit PassRecorder(PassBackend& inner) : inner_(inner) {}
  const ModelDesc& desc() const override { return inner_.desc(); }
  void attach(const sched::PolicyParams& policy, const Clock& clock) override { inner_.attach(policy, clock); }
  void publish(int slot, uint64_t pass_id, PriorityClass cls, std::span<const cpu::SeqChunk> chunks,
               std::span<const SampleSpec> sampling) override {
    RecordedPass p;
    p.slot = slot;
    p.id = pass_id;
    p.cls = cls;
    for (const auto& c : chunks) {
      p.tokens.emplace_back(c.tokens.begin(), c.tokens.end());
      p.pos.push_back(c.start_pos);
      p.tables.emplace_back(c.block_table.begin(), c.block_table.end());
      p.logits.push_back(c.logits);
    }
    p.sampling.assign(sampling.begin(), sampling.end());
    for (const auto& q : passes) p.queued = p.queued || (q.slot == slot && q.result.slot < 0);
    inner_.publish(slot, pass_id, cls, chunks, sampling);
    index_[pass_id] = passes.size();
    passes.push_back(std::move(p));
  }
  void cancel(uint64_t pass_id) override { inner_.cancel(pass_id); }
  void collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, double timeout_s,
               const Clock& clock) override {
    const size_t first = done.size();
    inner_.collect(done, units, timeout_s, clock);
    for (size_t i = first; i < done.size(); ++i) {
      auto it = index_.find(done[i].pass_id);
      if (it == index_.end()) continue;
      passes[it->second].result = done[i];
      if (on_result) on_result(passes[it->second]);
    }
  }

  std::vector<RecordedPass> passes;
  std::function<void(RecordedPass&)> on_result;

 private:
  PassBackend& inner_;
  std::map<uint64_t, size_t> index_;
};

}  // namespace qllm::test
