// Device pieces shared by the attention kernels (attention_prefill.cu,
// attention_decode.cu); included by .cu files only.
//
//   tensor cores  mma.sync m16n8k16 bf16 -> fp32, fragments loaded with
//                 ldmatrix from padded shared-memory rows (row stride HD + 8
//                 elements: the 8 rows an ldmatrix reads fall in distinct banks)
//   cp.async      16-byte global -> shared copies, zero-filled when masked
//   rows          a row's sequence, position and window start, validated
//   KV tiles      BN consecutive positions of one sequence and one kv head,
//                 gathered through the block table into shared memory
//
// Fragment layouts (PTX ISA, mma.m16n8k16): lane = 4 * g + q (g = lane / 4,
// q = lane % 4). A 16x16: a0 (row g, cols 2q..2q+1), a1 (row g + 8), a2 (row g,
// cols 2q + 8..), a3 (row g + 8, cols 2q + 8..). B 16x8: b0 (k 2q..2q+1, col g),
// b1 (k 2q + 8..). C 16x8: c0,c1 (row g, cols 2q, 2q+1), c2,c3 (row g + 8).
#pragma once

#include "kernels/attention_args.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

#include <cuda_bf16.h>

#include <cstdint>

namespace qllm::cuda::attn {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; when !valid the destination is zero-filled and
// nothing is read.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// d += a * b (16x16 bf16 times 16x8 bf16, fp32 accumulators).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 values as a bf16 pair (lo in the low half), rounded to nearest even.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ void flag_error(const PagedAttention& a) {
  if (a.d_error) *a.d_error = 1;
}

__device__ __forceinline__ int active_rows(const PagedAttention& a) { return dev::active_rows(a.d_rows, a.rows_cap); }

// Row t's sequence (-1: skip the row), position and first visible position.
struct RowInfo {
  int seq = -1, pos = 0, lo = 0;
};
__device__ __forceinline__ RowInfo row_info(const PagedAttention& a, int t, int rows) {
  RowInfo r;
  if (t >= rows) return r;
  const int s = a.d_seq[t];
  if (s < 0) return r;
  const int p = a.d_pos[t];
  if (s >= a.seqs_cap || p < 0 || int64_t(p) >= int64_t(a.max_blocks_per_seq) * a.block_size) {
    flag_error(a);
    return r;
  }
  r.seq = s;
  r.pos = p;
  r.lo = a.window > 0 ? max(0, p - a.window + 1) : 0;
  return r;
}

// Cache slot of position p of sequence s, or -1 (and the error flag) when the
// block table points outside the cache.
__device__ __forceinline__ int64_t key_slot(const PagedAttention& a, int s, int p) {
  const int b = a.d_tables[int64_t(s) * a.max_blocks_per_seq + p / a.block_size];
  const int64_t slot = int64_t(b) * a.block_size + p % a.block_size;
  if (b < 0 || slot >= a.cache_slots) {
    flag_error(a);
    return -1;
  }
  return slot;
}

// Loads positions [n0, n0 + BN) of sequence s, kv head kvh, into sK/sV (row
// stride HD + 8); positions past `last` and dims past head_dim are zeros. All
// NT threads of the block call it; it issues cp.async only (the caller
// commits and waits).
template <int HD, int BN, int NT>
__device__ __forceinline__ void load_kv_tile(const PagedAttention& a, int kvh, int s, int n0, int last,
                                             __nv_bfloat16* sK, __nv_bfloat16* sV) {
  constexpr int kChunks = HD / 8;  // 16-byte chunks per row
  constexpr int kStride = HD + 8;
  const int valid_chunks = a.head_dim / 8;
  const int64_t kvd = int64_t(a.kv_heads) * a.head_dim;
  const int64_t col0 = int64_t(kvh) * a.head_dim;
#pragma unroll
  for (int i = 0; i < (BN * kChunks + NT - 1) / NT; ++i) {
    const int idx = int(threadIdx.x) + i * NT;
    if ((BN * kChunks) % NT != 0 && idx >= BN * kChunks) break;
    const int r = idx / kChunks, c = idx % kChunks;
    const int p = n0 + r;
    int64_t slot = -1;
    if (p <= last && c < valid_chunks) slot = key_slot(a, s, p);
    const bool ok = slot >= 0;
    const int64_t off = ok ? slot * kvd + col0 + c * 8 : 0;
    cp_async16(sK + r * kStride + c * 8, a.k_cache + off, ok);
    cp_async16(sV + r * kStride + c * 8, a.v_cache + off, ok);
  }
}

// Host: the shape and pointer checks both attention launchers make.
inline void check_args(const PagedAttention& a, const char* op) {
  QLLM_LAUNCH_CHECK(a.heads > 0 && a.kv_heads > 0 && a.heads % a.kv_heads == 0,
                    "%s: heads %d must be a positive multiple of kv_heads %d", op, a.heads, a.kv_heads);
  QLLM_LAUNCH_CHECK(a.head_dim > 0 && a.head_dim % 8 == 0 && a.head_dim <= 256,
                    "%s: head_dim %d must be a multiple of 8 in [8, 256]", op, a.head_dim);
  QLLM_LAUNCH_CHECK(a.rows_cap >= 0, "%s: rows_cap %d", op, a.rows_cap);
  QLLM_LAUNCH_CHECK(a.ldq >= int64_t(a.heads) * a.head_dim && a.ldq % 8 == 0 && a.ldo >= int64_t(a.heads) * a.head_dim &&
                        a.ldo % 8 == 0,
                    "%s: ldq %lld and ldo %lld must be multiples of 8 and at least heads * head_dim = %d", op,
                    static_cast<long long>(a.ldq), static_cast<long long>(a.ldo), a.heads * a.head_dim);
  QLLM_LAUNCH_CHECK(a.block_size > 0 && a.max_blocks_per_seq > 0 && a.seqs_cap > 0 && a.cache_slots > 0,
                    "%s: block_size %d, max_blocks_per_seq %d, seqs_cap %d, cache_slots %lld must be positive", op,
                    a.block_size, a.max_blocks_per_seq, a.seqs_cap, static_cast<long long>(a.cache_slots));
  QLLM_LAUNCH_CHECK(a.window >= 0, "%s: window %d", op, a.window);
  QLLM_LAUNCH_CHECK(a.q && a.out && a.k_cache && a.v_cache && a.d_tables && a.d_rows && a.d_pos && a.d_seq,
                    "%s: a device pointer is null", op);
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  QLLM_LAUNCH_CHECK(aligned(a.q) && aligned(a.out) && aligned(a.k_cache) && aligned(a.v_cache),
                    "%s: q, out, k_cache and v_cache must be 16-byte aligned", op);
}

}  // namespace qllm::cuda::attn
