// The arguments of the paged attention ops (kernels/attention_prefill.h,
// kernels/attention_decode.h). Every pointer is device memory; every value
// here is fixed when a graph is captured. What changes per step is read from
// the device arrays: the row count, each row's position and sequence, the
// block tables.
//
//   q        bf16 [rows_cap, ldq]  row t holds heads * head_dim values (after RoPE)
//   out      bf16 [rows_cap, ldo]  the same layout; rows that are not active are
//            not written
//   k_cache, v_cache  bf16 [cache_slots, kv_heads * head_dim]: one layer of the
//            paged cache, slot = block * block_size + offset. The K/V of the
//            current rows must already be there.
//   d_tables int32 [seqs_cap, max_blocks_per_seq]: block ids of each sequence
//   d_rows   int32 [1]         active rows this step (clamped to [0, rows_cap])
//   d_pos    int32 [rows_cap]  position of row t in its sequence
//   d_seq    int32 [rows_cap]  sequence of row t (row of d_tables); -1: padding,
//            skipped
//   d_error  int32 [1] or null: set to 1 when an active row names a sequence
//            outside [0, seqs_cap), a position outside [0, max_blocks_per_seq *
//            block_size), or a key whose slot lies outside [0, cache_slots);
//            such a row is skipped (a bad slot reads as zeros)
//
// Row t attends to positions [lo, d_pos[t]] of its sequence, lo = 0, or with a
// sliding window w > 0, lo = max(0, d_pos[t] - w + 1); q head h reads kv head
// h / (heads / kv_heads); scores are scaled by 1 / sqrt(head_dim). The
// reference is engine/cpu/attention.h paged_attention.
//
// head_dim: a multiple of 8, at most 256. ldq, ldo multiples of 8; q, out and
// the caches 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

struct PagedAttention {
  const __nv_bfloat16* q = nullptr;
  int64_t ldq = 0;
  __nv_bfloat16* out = nullptr;
  int64_t ldo = 0;
  const __nv_bfloat16* k_cache = nullptr;
  const __nv_bfloat16* v_cache = nullptr;
  int64_t cache_slots = 0;
  int block_size = 0;
  const int32_t* d_tables = nullptr;
  int seqs_cap = 0;
  int max_blocks_per_seq = 0;
  const int32_t* d_rows = nullptr;
  const int32_t* d_pos = nullptr;
  const int32_t* d_seq = nullptr;
  int rows_cap = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int window = 0;  // sliding window in tokens; 0: none
  int32_t* d_error = nullptr;
};

}  // namespace qllm::cuda
