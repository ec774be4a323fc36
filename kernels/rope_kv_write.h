// Rotary embedding of q and k (Hugging Face rotate_half form, engine/cpu/ops.h
// rope: dims i and i + head_dim/2 of each head are a pair, angle
// pos * theta^(-2i/head_dim)), fused with writing K and V into the paged cache.
//
//   q        bf16 [rows_cap, heads * head_dim], row stride ldq: rotated in place
//   k        bf16 [rows_cap, kv_heads * head_dim], row stride ldk: read only
//   v        bf16 [rows_cap, kv_heads * head_dim], row stride ldv: read only
//   d_pos    int32 [rows_cap]  position of the row in its sequence (device)
//   d_slot   int64 [rows_cap]  KV cache slot of the row (device); -1: no write
//   k_cache, v_cache  bf16 [cache_slots, kv_heads * head_dim] (one layer of the
//            paged cache, slot = block * block_size + offset): row t's rotated
//            K and its V go to slot d_slot[t]
//   d_rows   int32 [1] rows this step (device)
//   d_error  int32 [1] or null: set to 1 when an active row has a slot outside
//            [-1, cache_slots) (that row's K/V are not written)
//
// q, k and v may be the three parts of one fused QKV row (ldq = ldk = ldv).
// Rows >= *d_rows and rows with d_pos < 0 (padding) are not touched. head_dim %
// 8 == 0, ldq and ldk even, ldv % 8 == 0, v and the caches 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

struct RopeKvShape {
  int heads = 0;      // query heads
  int kv_heads = 0;   // key/value heads
  int head_dim = 0;
  double theta = 10000.0;  // rope_theta
};

void rope_kv_write(__nv_bfloat16* q, int64_t ldq, const __nv_bfloat16* k, int64_t ldk,
                   const __nv_bfloat16* v, int64_t ldv, const RopeKvShape& shape, const int32_t* d_pos,
                   const int64_t* d_slot, __nv_bfloat16* k_cache, __nv_bfloat16* v_cache, int64_t cache_slots,
                   int rows_cap, const int32_t* d_rows, int32_t* d_error, cudaStream_t stream);

}  // namespace qllm::cuda
