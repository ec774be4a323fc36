// Counter-based weights for synthetic checkpoints, shared by host and device.
//
// Element i of a tensor is a pure function of (seed, tensor name, i), so the
// GPU can regenerate a synthetic model's weights (or check them) without
// reading the file:
//
//   key   = tensor_key(seed, name)          name: the per-expert-layout name
//   value = synth_value({key, center, half_width}, i)
//         = center + half_width * u(key, i),  u uniform in [-1, 1), 24 bits
//
// u has 24 significant bits and half_width is a power of two, so
// half_width * u is exact in fp32 and the sum is rounded once: the result is
// the same with or without FMA contraction, on the host and on the device.
// Values are then rounded to the checkpoint dtype (BF16/F16 round to nearest
// even). Plain functions only: no std::, no globals.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QLLM_HD __host__ __device__
#else
#define QLLM_HD
#endif

namespace qllm::synth {

// splitmix64's output function applied to x + golden ratio (one step of the
// splitmix64 generator whose state is x).
QLLM_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// FNV-1a over n bytes.
QLLM_HD inline uint64_t fnv1a64(const char* s, uint64_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (uint64_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(s[i]);
    h *= 0x100000001B3ull;
  }
  return h;
}

// The stream key of one tensor.
QLLM_HD inline uint64_t tensor_key(uint64_t seed, const char* name, uint64_t n) {
  return splitmix64(splitmix64(seed) ^ fnv1a64(name, n));
}

// Element i of stream `key`: uniform in [-1, 1) on a grid of 2^-23.
QLLM_HD inline float uniform_pm1(uint64_t key, uint64_t i) {
  const uint64_t h = splitmix64(key + i * 0x9E3779B97F4A7C15ull);
  const int32_t k = static_cast<int32_t>(h >> 40) - (1 << 23);  // [-2^23, 2^23)
  return static_cast<float>(k) * (1.0f / 8388608.0f);
}

struct SynthInit {
  uint64_t key = 0;
  float center = 0.0f;
  float half_width = 0.0f;  // a power of two (see above)
};

QLLM_HD inline float synth_value(const SynthInit& p, uint64_t i) {
  return p.center + p.half_width * uniform_pm1(p.key, i);
}

// Where element `flat` of a fused expert tensor comes from.
struct FusedIndex {
  int expert;
  int part;        // gate_up: 0 gate, 1 up; down: 0
  uint64_t index;  // flat index inside that expert's [rows, cols] matrix
};

// gate_up_proj [E, 2I, H]: gate rows first, then up rows.
QLLM_HD inline FusedIndex fused_gate_up_index(uint64_t flat, uint64_t I, uint64_t H) {
  const uint64_t per_expert = 2 * I * H;
  const uint64_t rem = flat % per_expert;
  const int part = rem < I * H ? 0 : 1;
  return {static_cast<int>(flat / per_expert), part, part == 0 ? rem : rem - I * H};
}

// down_proj [E, H, I].
QLLM_HD inline FusedIndex fused_down_index(uint64_t flat, uint64_t I, uint64_t H) {
  return {static_cast<int>(flat / (H * I)), 0, flat % (H * I)};
}

}  // namespace qllm::synth
