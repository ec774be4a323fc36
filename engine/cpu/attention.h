// CPU reference attention: causal GQA attention of token rows over a paged KV
// store, fp32. The specification of kernels/attention_prefill.cu and
// kernels/attention_decode.cu.
//
//   rows      row t is at position pos[t] of sequence seq[t] (an index into
//             `tables`); seq[t] < 0 marks a padding row, left untouched
//   keys      positions [lo, pos[t]] of its own sequence, lo = 0, or with a
//             sliding window w > 0, lo = max(0, pos[t] - w + 1); position p is
//             at slot table[p / block_size] * block_size + p % block_size
//   heads     q head h reads kv head h / (heads / kv_heads)
//   scores    q . k / sqrt(head_dim), softmax (ops.h), weighted sum of v
//
// q and out are [T, heads * head_dim]; K and V of every row (the current ones
// included) must already be in the store.
#pragma once

#include "engine/cpu/reference_model.h"

#include <cstdint>
#include <span>
#include <vector>

namespace qllm::cpu {

struct AttentionShape {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int window = 0;  // sliding window in tokens; 0: none
};

void paged_attention(const float* q, const PagedKv& kv, int layer, std::span<const int> pos,
                     std::span<const int> seq, std::span<const std::vector<int32_t>> tables,
                     const AttentionShape& shape, float* out);

}  // namespace qllm::cpu
