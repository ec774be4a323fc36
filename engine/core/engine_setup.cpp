#include "engine/core/engine_setup.h"

#include "engine/common/error.h"

#include <algorithm>

namespace qllm {

sched::Policy parse_policy(std::string_view s) {
  if (s == "fcfs-iteration") return sched::Policy::FcfsIteration;
  if (s == "priority-layer") return sched::Policy::PriorityLayer;
  if (s == "priority-expert") return sched::Policy::PriorityExpert;
  fail("unknown policy '{}': expected fcfs-iteration, priority-layer or priority-expert", s);
}

EngineLimits limits_from_config(const EngineConfig& c, const ModelDesc& d) {
  EngineLimits l;
  l.ls_slots = int(c.scheduler_ls_slots);
  l.be_slots = int(c.scheduler_be_slots);
  l.max_tokens_per_step = int(c.scheduler_max_tokens_per_step);
  l.max_seqs_per_step = int(c.scheduler_max_seqs_per_step);
  l.prefill_chunk = int(c.scheduler_prefill_chunk);
  l.block_size = int(c.kv_block_size);
  l.be_max_wait_s = c.scheduler_be_max_wait_s;
  l.queue_prefill = c.scheduler_queue_prefill;
  l.policy = parse_policy(c.scheduler_policy);
  const int64_t max_len = std::min<int64_t>(c.model_max_seq_len, d.max_positions);
  l.kv_blocks = int(c.kv_num_blocks > 0 ? c.kv_num_blocks
                                        : (max_len + l.block_size - 1) / l.block_size * 16);
  return l;
}

int64_t max_sequence_length(const EngineConfig& c, const ModelDesc& d, const EngineLimits& l) {
  return std::min({c.model_max_seq_len, int64_t(d.max_positions), int64_t(l.kv_blocks) * l.block_size});
}

}  // namespace qllm
