// Token sampling on the device: the same token as engine/cpu/sampling.h
// sample_token for the same logits and parameters.
//
//   logits   fp32 [rows_cap, ld], row r holds `vocab` values (finite or -inf;
//            no NaN, no +inf)
//   d_params SamplingRow [rows_cap] (device): each row's parameters and step
//   d_rows   int32 [1] rows this step (device; clamped to [0, rows_cap])
//   tokens   int32 [rows_cap]: token of each active row; others untouched
//
// What the CPU sampler does, and how the kernel reproduces it:
//   greedy (temperature <= 0 or top_k == 1): the highest logit, lowest id on
//     ties; a block-wide argmax.
//   otherwise the candidates are the top_k highest logits (all when top_k <=
//     0), highest first, lower id first among equal logits; prob_i =
//     exp((logit_i - max) / temperature) in double; the nucleus is the
//     shortest prefix whose running sum of prob_i / sum reaches top_p (when
//     top_p < 1); the draw u = sampling_uniform(seed, step) * (sum of the
//     nucleus) picks the first candidate whose running sum exceeds u. Every
//     sum is a sequential sum in candidate order, so the kernel keeps that
//     order and those additions: it sorts the candidates, computes the same
//     doubles in parallel and lets one thread do the running sums.
//   It sorts only the candidates with (logit - max) / temperature >= -40: a
//     term below e^-40 cannot change a running sum that is at least 1 (the top
//     candidate alone contributes exactly 1), nor the nucleus sum by the time
//     it gets there, so the sums and the token are the same. The running sum
//     stops as soon as its terms fall below 2^-55 of it, for the same reason.
//
// The kernel's exp is CUDA's (1 ulp), the CPU's is libm's: a probability may
// differ in its last bit, which changes the token only when the draw falls
// within about 1e-16 (relative) of a boundary between two candidates.
//
// Cost per sampled row: a few passes over the vocabulary, a stable radix sort
// of the candidates (four 8-bit passes; a pass whose digit is the same for all
// is skipped), and running sums by one thread over the candidates that count:
// microseconds for a peaked distribution or a small top_k, around a
// millisecond for a flat one over a 150k vocabulary with top_k off.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace qllm::cuda {

// One row's sampling parameters (engine/cpu/sampling.h SamplingParams plus the
// step index of the token being generated). Same layout on host and device.
struct SamplingRow {
  double temperature = 0.0;  // <= 0: greedy
  double top_p = 1.0;        // >= 1: off
  int32_t top_k = 0;         // <= 0: off
  int32_t reserved = 0;
  uint64_t seed = 0;
  uint64_t step = 0;
};
static_assert(sizeof(SamplingRow) == 40, "SamplingRow is shared with the device");

// Workspace for sample_tokens: `blocks` slices of 16 bytes per vocabulary
// entry (the candidates' sort buffers and running sums).
size_t sampling_workspace_bytes(int vocab, int blocks);

// Samples the active rows with `blocks` thread blocks (each takes rows r =
// b, b + blocks, ...; at most rows_cap are started). Launches on `stream`; no
// allocation, no synchronisation (capturable). `workspace` (device, 16-byte
// aligned) holds at least sampling_workspace_bytes(vocab, blocks). Aborts
// with a message on a bad shape.
void sample_tokens(const float* logits, int64_t ld, int vocab, const SamplingRow* d_params,
                   const int32_t* d_rows, int rows_cap, int32_t* tokens, void* workspace,
                   size_t workspace_bytes, int blocks, cudaStream_t stream);

}  // namespace qllm::cuda
