#include "engine/core/cpu_engine.h"

#include "engine/common/error.h"

namespace qllm {

CpuBackend::CpuBackend(const cpu::ReferenceModel& model, int slots, int kv_blocks, int block_size)
    : model_(model), kv_(model.new_paged_kv(kv_blocks, block_size)), slots_(size_t(std::max(slots, 0))) {}

void CpuBackend::begin(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) {
  auto& s = slots_.at(size_t(slot));
  s.pass = model_.begin(kv_, chunks);
  s.experts.clear();
  s.sampling.assign(sampling.begin(), sampling.end());
  QLLM_CHECK_MSG(s.sampling.size() == s.pass.logit_rows.size(),
                 "slot {}: {} sampling entries for {} chunks with logits", slot, s.sampling.size(),
                 s.pass.logit_rows.size());
}

int CpuBackend::run(int slot, const sched::Cursor& c) {
  auto& s = slots_.at(size_t(slot));
  switch (c.kind) {
    case sched::UnitKind::Attn:
      model_.attn_unit(s.pass, kv_, c.layer);
      s.experts = model_.active_experts(s.pass);
      return int(s.experts.size());
    case sched::UnitKind::Expert:
      model_.expert_unit(s.pass, c.layer, s.experts.at(size_t(c.expert)));
      return 0;
    case sched::UnitKind::Head:
      model_.head_unit(s.pass);
      return 0;
    case sched::UnitKind::Done:
      break;
  }
  QLLM_CHECK_MSG(false, "slot {}: no unit to run", slot);
  return 0;
}

std::vector<int32_t> CpuBackend::sampled(int slot) {
  auto& s = slots_.at(size_t(slot));
  const size_t V = size_t(model_.desc().vocab);
  std::vector<int32_t> out;
  out.reserve(s.sampling.size());
  for (size_t r = 0; r < s.sampling.size(); ++r)
    out.push_back(sample_token(std::span<const float>(s.pass.logits.data() + r * V, V), s.sampling[r].params,
                               s.sampling[r].step));
  return out;
}

}  // namespace qllm
