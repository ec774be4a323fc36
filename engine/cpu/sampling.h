// Token sampling: greedy, temperature, top-k, top-p, seeded. The random draw
// for step s of a request is a pure function of (seed, s), so a sequence
// samples the same tokens whichever dispatcher runs it and however its passes
// are preempted.
#pragma once

#include <cstdint>
#include <span>

namespace qllm {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy (ties: lowest id)
  double top_p = 1.0;        // 1: off
  int top_k = 0;             // 0: off
  uint64_t seed = 0;
};

// Uniform draw in [0, 1) for step `step` of a request seeded `seed`.
double sampling_uniform(uint64_t seed, uint64_t step);

// Picks one token from `logits` (vocabulary order). `step` is the index of the
// token being generated within its request.
int32_t sample_token(std::span<const float> logits, const SamplingParams& p, uint64_t step);

}  // namespace qllm
