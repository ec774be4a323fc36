// The engine limits and GPU backend configuration the GPU engine tests share
// (host and device dispatchers): one LS slot then one BE slot, 64 tokens and
// 8 sequences per step, prefill chunks of 16, 256 KV blocks of 8 tokens,
// sequences up to 1024 positions, an 8 MiB GEMM workspace.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/core/engine.h"
#include "engine/gpu/host_backend.h"

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

}  // namespace qllm::test
