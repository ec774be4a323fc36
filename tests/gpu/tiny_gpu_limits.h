// The engine limits, GPU backend configuration and requests the GPU engine
// tests share (host and device dispatchers): one LS slot then one BE slot, 64
// tokens and 8 sequences per step, prefill chunks of 16, 256 KV blocks of 8
// tokens, sequences up to 1024 positions, an 8 MiB GEMM workspace; requests
// with seeded random prompts.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/core/engine.h"
#include "engine/gpu/host_backend.h"

#include <cstdint>
#include <random>

namespace qllm::test {

inline EngineLimits tiny_gpu_limits(sched::Policy p) {
  EngineLimits l;
  l.ls_slots = 1;
  l.be_slots = 1;
  l.max_tokens_per_step = 64;
  l.max_seqs_per_step = 8;
  l.prefill_chunk = 16;
  l.kv_blocks = 256;
  l.block_size = 8;
  l.policy = p;
  return l;
}

inline gpu::HostBackendConfig tiny_gpu_backend_config(const EngineLimits& l) {
  auto c = gpu::HostBackendConfig::from(l, 1024);
  c.gemm_workspace_bytes = size_t(8) << 20;
  return c;
}

// A request with a random prompt of `prompt_len` tokens (seeded by its id);
// `sampled`: temperature 0.8, top-k 20, top-p 0.95, else greedy. The sampling
// seed is set for greedy requests too: it names the rows.
inline Request req(uint64_t id, PriorityClass cls, int prompt_len, int max_tokens, double at, bool sampled,
                   int vocab) {
  std::mt19937 rng(static_cast<uint32_t>(id * 7919));
  Request r;
  r.id = id;
  r.cls = cls;
  r.prompt.resize(size_t(prompt_len));
  for (auto& t : r.prompt) t = int32_t(rng() % uint32_t(vocab));
  r.max_tokens = max_tokens;
  r.arrival_s = at;
  r.sampling.seed = 1000 + id;
  if (sampled) {
    r.sampling.temperature = 0.8;
    r.sampling.top_k = 20;
    r.sampling.top_p = 0.95;
  }
  return r;
}

}  // namespace qllm::test
