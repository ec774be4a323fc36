// From the engine configuration (engine/config) to the engine's limits.
#pragma once

#include "engine/config/engine_config.h"
#include "engine/core/cpu_engine.h"
#include "engine/model/model_desc.h"

#include <string_view>

namespace qllm {

// "fcfs-iteration", "priority-layer" or "priority-expert"; throws qllm::Error
// naming the accepted values otherwise.
sched::Policy parse_policy(std::string_view name);

// Slots, batch limits, prefill chunk, KV blocks and the policy of the
// configuration. On the cpu dispatcher kv_cache.num_blocks 0 means room for 16
// sequences of the longest allowed length (min of model.max_seq_len and the
// model's positions).
EngineLimits limits_from_config(const EngineConfig& c, const ModelDesc& d);

// The longest sequence (prompt + output) a request may have: the smallest of
// model.max_seq_len, the model's positions and the KV cache.
int64_t max_sequence_length(const EngineConfig& c, const ModelDesc& d, const EngineLimits& l);

}  // namespace qllm
