// RoPE + paged KV write (see rope_kv_write.h). One block per row. The block
// first computes cos/sin of the row's head_dim/2 angles into shared memory,
// as engine/cpu/ops.cpp rope does (inv_freq in double rounded to fp32, the
// angle float(pos) * inv_freq in fp32, accurate sincosf: the angle reaches
// tens of thousands of radians), then rotates two adjacent pairs per thread
// and step with 4-byte accesses, and copies V 16 bytes at a time.
#include "kernels/rope_kv_write.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 128;

// Rotates pairs (i, i + half) and (i + 1, i + 1 + half) of the head at src into dst.
__device__ __forceinline__ void rotate2(const __nv_bfloat16* src, __nv_bfloat16* dst, int i, int half,
                                       const float* cs) {
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + i));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + i + half));
  const float c0 = cs[i], c1 = cs[i + 1], s0 = cs[half + i], s1 = cs[half + i + 1];
  *reinterpret_cast<__nv_bfloat162*>(dst + i) = __floats2bfloat162_rn(lo.x * c0 - hi.x * s0, lo.y * c1 - hi.y * s1);
  *reinterpret_cast<__nv_bfloat162*>(dst + i + half) =
      __floats2bfloat162_rn(hi.x * c0 + lo.x * s0, hi.y * c1 + lo.y * s1);
}

__global__ void rope_kv_kernel(__nv_bfloat16* q, int64_t ldq, const __nv_bfloat16* k, int64_t ldk,
                               const __nv_bfloat16* v, int64_t ldv, RopeKvShape s,
                               const int32_t* __restrict__ d_pos, const int64_t* __restrict__ d_slot,
                               __nv_bfloat16* __restrict__ k_cache, __nv_bfloat16* __restrict__ v_cache,
                               int64_t cache_slots, int rows_cap, const int32_t* __restrict__ d_rows,
                               int32_t* d_error) {
  extern __shared__ float cs[];  // cos [half], then sin [half]
  const int row = int(blockIdx.x);
  if (row >= dev::active_rows(d_rows, rows_cap)) return;
  const int pos = d_pos[row];
  if (pos < 0) return;
  const int hd = s.head_dim, half = hd / 2, kvd = s.kv_heads * hd;
  for (int i = int(threadIdx.x); i < half; i += kThreads) {
    const float inv_freq = float(1.0 / pow(s.theta, double(2 * i) / double(hd)));
    const float a = float(pos) * inv_freq;
    float sn, cn;
    sincosf(a, &sn, &cn);
    cs[i] = cn;
    cs[half + i] = sn;
  }
  __syncthreads();

  const int pairs2 = half / 2;  // two pairs per thread and step
  __nv_bfloat16* qr = q + int64_t(row) * ldq;
  for (int idx = int(threadIdx.x); idx < s.heads * pairs2; idx += kThreads) {
    const int h = idx / pairs2, i = 2 * (idx % pairs2);
    rotate2(qr + int64_t(h) * hd, qr + int64_t(h) * hd, i, half, cs);
  }

  const int64_t slot = d_slot[row];
  if (slot < 0 || slot >= cache_slots) {
    if (slot != -1 && threadIdx.x == 0 && d_error) *d_error = 1;
    return;
  }
  const __nv_bfloat16* kr = k + int64_t(row) * ldk;
  __nv_bfloat16* kc = k_cache + slot * kvd;
  for (int idx = int(threadIdx.x); idx < s.kv_heads * pairs2; idx += kThreads) {
    const int h = idx / pairs2, i = 2 * (idx % pairs2);
    rotate2(kr + int64_t(h) * hd, kc + int64_t(h) * hd, i, half, cs);
  }
  const uint4* vr = reinterpret_cast<const uint4*>(v + int64_t(row) * ldv);
  uint4* vc = reinterpret_cast<uint4*>(v_cache + slot * kvd);
  for (int c = int(threadIdx.x); c < kvd / 8; c += kThreads) vc[c] = vr[c];
}

bool aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

}  // namespace

void rope_kv_write(__nv_bfloat16* q, int64_t ldq, const __nv_bfloat16* k, int64_t ldk,
                   const __nv_bfloat16* v, int64_t ldv, const RopeKvShape& shape, const int32_t* d_pos,
                   const int64_t* d_slot, __nv_bfloat16* k_cache, __nv_bfloat16* v_cache, int64_t cache_slots,
                   int rows_cap, const int32_t* d_rows, int32_t* d_error, cudaStream_t stream) {
  const int hd = shape.head_dim;
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(shape.heads > 0 && shape.kv_heads > 0, "heads = %d, kv_heads = %d", shape.heads,
                    shape.kv_heads);
  QLLM_LAUNCH_CHECK(hd > 0 && hd % 8 == 0, "head_dim = %d must be a positive multiple of 8", hd);
  QLLM_LAUNCH_CHECK(shape.theta > 0.0, "rope theta = %g", shape.theta);
  const int64_t qd = int64_t(shape.heads) * hd, kvd = int64_t(shape.kv_heads) * hd;
  QLLM_LAUNCH_CHECK(ldq >= qd && ldq % 2 == 0, "ldq = %lld must be even and >= heads * head_dim = %lld",
                    static_cast<long long>(ldq), static_cast<long long>(qd));
  QLLM_LAUNCH_CHECK(ldk >= kvd && ldk % 2 == 0, "ldk = %lld must be even and >= kv_heads * head_dim = %lld",
                    static_cast<long long>(ldk), static_cast<long long>(kvd));
  QLLM_LAUNCH_CHECK(ldv >= kvd && ldv % 8 == 0,
                    "ldv = %lld must be a multiple of 8 and >= kv_heads * head_dim = %lld",
                    static_cast<long long>(ldv), static_cast<long long>(kvd));
  QLLM_LAUNCH_CHECK(aligned4(q) && aligned4(k), "q and k must be 4-byte aligned");
  QLLM_LAUNCH_CHECK(aligned16(v) && aligned16(k_cache) && aligned16(v_cache),
                    "v and the caches must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(cache_slots > 0, "cache_slots = %lld", static_cast<long long>(cache_slots));
  QLLM_LAUNCH_CHECK(d_pos && d_slot && d_rows, "null device pointer");
  const size_t smem = sizeof(float) * size_t(hd);
  QLLM_LAUNCH_CHECK(smem <= 48 * 1024, "head_dim = %d is too large", hd);
  rope_kv_kernel<<<rows_cap, kThreads, smem, stream>>>(q, ldq, k, ldk, v, ldv, shape, d_pos, d_slot, k_cache,
                                                       v_cache, cache_slots, rows_cap, d_rows, d_error);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
