// The graph table: every captured work-unit graph of every slot, indexed by
// (slot, unit kind, layer, expert, bucket), in one flat array the device
// scheduler reads to launch a unit (DESIGN.md). The index arithmetic is plain
// __host__ __device__ code so the host dispatcher, the device loop and the CPU
// tests compute the same slot in the array.
//
// Layout per slot: attn[layer][bucket], expert[layer][expert][bucket],
// head[bucket]. A missing entry (a bucket not captured, a dense layer's
// experts past 0) is nullptr; launching it is a scheduler error.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#if defined(__CUDACC__)
#define QLLM_GRAPHS_HD __host__ __device__
#else
#define QLLM_GRAPHS_HD
#endif

namespace qllm::graphs {

enum class UnitKind : uint8_t { Attn = 0, Expert = 1, Head = 2 };

struct TableShape {
  int32_t slots = 0, layers = 0, experts = 0, buckets = 0;

  QLLM_GRAPHS_HD int64_t per_slot() const {
    return int64_t(layers) * buckets + int64_t(layers) * experts * buckets + buckets;
  }
  QLLM_GRAPHS_HD int64_t size() const { return per_slot() * slots; }
  // Index of one graph; -1 when an argument is out of range.
  QLLM_GRAPHS_HD int64_t index(int slot, UnitKind kind, int layer, int expert, int bucket) const {
    if (slot < 0 || slot >= slots || bucket < 0 || bucket >= buckets) return -1;
    const int64_t base = int64_t(slot) * per_slot();
    switch (kind) {
      case UnitKind::Attn:
        if (layer < 0 || layer >= layers) return -1;
        return base + int64_t(layer) * buckets + bucket;
      case UnitKind::Expert:
        if (layer < 0 || layer >= layers || expert < 0 || expert >= experts) return -1;
        return base + int64_t(layers) * buckets + (int64_t(layer) * experts + expert) * buckets + bucket;
      case UnitKind::Head:
        return base + int64_t(layers) * buckets + int64_t(layers) * experts * buckets + bucket;
    }
    return -1;
  }
};

// What the device scheduler gets: the shape and a device array of
// executable graphs (instantiated for device launch and uploaded).
struct DeviceGraphTable {
  TableShape shape;
  const cudaGraphExec_t* execs = nullptr;  // device memory, shape.size() entries

  QLLM_GRAPHS_HD cudaGraphExec_t at(int slot, UnitKind kind, int layer, int expert, int bucket) const {
    const int64_t i = shape.index(slot, kind, layer, expert, bucket);
    return i < 0 ? nullptr : execs[i];
  }
};

// Bucket i holds up to 2^i rows: the index of the smallest bucket that holds
// `rows` (rows >= 1), or -1 when rows exceeds the largest of `buckets`.
QLLM_GRAPHS_HD inline int bucket_of(int rows, int buckets) {
  if (rows < 1) return 0;
  int b = 0;
  while (b < buckets && (1 << b) < rows) ++b;
  return b < buckets ? b : -1;
}

}  // namespace qllm::graphs
