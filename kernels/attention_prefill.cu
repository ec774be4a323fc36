// Causal GQA attention for a pass of token rows (attention_prefill.h).
//
// Block = 4 warps over a tile of BM = 64 query entries of one kv head. Entry e
// of the pass is (row e / G, q head kvh * G + e % G), G = heads / kv_heads:
// the G heads that share a kv head sit next to each other in M, so one K/V
// tile serves all of them. Each warp owns 16 entries.
//
// The entries of a tile may belong to several sequences (chunk boundaries,
// decode rows). The block walks those sequences in ascending index order; for
// each it streams the positions [min lo, max pos] of the tile's rows of that
// sequence, BN at a time, through a two-stage cp.async pipeline. Per tile a
// warp computes S = Q K^T (mma.sync m16n8k16, fp32), masks keys outside
// [lo, pos] of each entry's row and entries of other sequences to -inf, folds
// S into its running max / sum (exp2 domain), and adds P V (P rounded to
// bf16). A warp whose entries see nothing of a tile skips it. At the end each
// entry's output is its accumulator over its sum, staged through shared
// memory for 16-byte stores.
//
// Shared memory: Q [64][HD + 8] + 2 stages of K and V [BN][HD + 8] (bf16);
// HD is head_dim rounded up to 32, 64, 128 or 256 (padding dims are zeros).
#include "kernels/attention_prefill.h"

#include "kernels/attention_mma.cuh"
#include "kernels/cuda_check.h"
#include "kernels/launch_check.h"

#include <climits>
#include <cmath>

namespace qllm::cuda {
namespace {

using attn::kLog2e;

constexpr int kBM = 64;       // query entries per block
constexpr int kThreads = 128;  // 4 warps x 16 entries

template <int HD, int BN>
constexpr size_t prefill_smem_bytes() {
  return size_t(kBM + 4 * BN) * (HD + 8) * sizeof(__nv_bfloat16);
}

template <int HD, int BN>
__global__ void __launch_bounds__(kThreads) attention_prefill_kernel(const PagedAttention a, float scale_log2) {
  static_assert(HD % 32 == 0 && BN % 16 == 0);
  constexpr int kStride = HD + 8;
  constexpr int kChunks = HD / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [kBM][kStride]
  __nv_bfloat16* sK = sQ + kBM * kStride;                          // [2][BN][kStride]
  __nv_bfloat16* sV = sK + 2 * BN * kStride;                       // [2][BN][kStride]
  __shared__ int e_seq[kBM], e_pos[kBM], e_lo[kBM];
  __shared__ int s_next[3];

  const int rows = attn::active_rows(a);
  const int G = a.heads / a.kv_heads;
  const int kvh = int(blockIdx.y);
  const int e0 = int(blockIdx.x) * kBM;
  if (e0 / G >= rows) return;
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int valid_chunks = a.head_dim / 8;

  if (tid < kBM) {
    const attn::RowInfo r = attn::row_info(a, (e0 + tid) / G, rows);
    e_seq[tid] = r.seq;
    e_pos[tid] = r.pos;
    e_lo[tid] = r.lo;
  }
  // Q tile: entries past the active rows read as zeros.
#pragma unroll
  for (int i = 0; i < kBM * kChunks / kThreads; ++i) {
    const int idx = tid + i * kThreads;
    const int r = idx / kChunks, c = idx % kChunks;
    const int e = e0 + r, t = e / G, g = e % G;
    const bool ok = t < rows && c < valid_chunks;
    const __nv_bfloat16* src = ok ? a.q + int64_t(t) * a.ldq + int64_t(kvh * G + g) * a.head_dim + c * 8 : a.q;
    attn::cp_async16(sQ + r * kStride + c * 8, src, ok);
  }
  attn::cp_async_commit();
  __syncthreads();

  // This thread's two entries (rows g and g + 8 of its warp's 16).
  const int er0 = warp * 16 + lane / 4, er1 = er0 + 8;
  const int seq0 = e_seq[er0], pos0 = e_pos[er0], lo0 = e_lo[er0];
  const int seq1 = e_seq[er1], pos1 = e_pos[er1], lo1 = e_lo[er1];

  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  int prev = -1;
  for (;;) {
    // Next sequence of the tile and the positions its rows need.
    if (warp == 0) {
      const int sa = e_seq[lane], sb = e_seq[lane + 32];
      const int cur = __reduce_min_sync(0xffffffffu, min(sa > prev ? sa : INT_MAX, sb > prev ? sb : INT_MAX));
      int lo = INT_MAX, hi = -1;
      if (sa == cur) lo = e_lo[lane], hi = e_pos[lane];
      if (sb == cur) lo = min(lo, e_lo[lane + 32]), hi = max(hi, e_pos[lane + 32]);
      lo = __reduce_min_sync(0xffffffffu, lo);
      hi = __reduce_max_sync(0xffffffffu, hi);
      if (lane == 0) s_next[0] = cur, s_next[1] = lo, s_next[2] = hi;
    }
    __syncthreads();
    const int cur = s_next[0];
    if (cur == INT_MAX) break;
    const int kv_lo = s_next[1], kv_hi = s_next[2];
    prev = cur;
    const bool mine0 = seq0 == cur, mine1 = seq1 == cur;
    const int n_tiles = (kv_hi - kv_lo) / BN + 1;

    attn::load_kv_tile<HD, BN, kThreads>(a, kvh, cur, kv_lo, kv_hi, sK, sV);
    attn::cp_async_commit();
    for (int it = 0; it < n_tiles; ++it) {
      const int buf = it & 1;
      const int n0 = kv_lo + it * BN;
      if (it + 1 < n_tiles)
        attn::load_kv_tile<HD, BN, kThreads>(a, kvh, cur, n0 + BN, kv_hi, sK + (buf ^ 1) * BN * kStride,
                                             sV + (buf ^ 1) * BN * kStride);
      attn::cp_async_commit();
      attn::cp_async_wait<1>();
      __syncthreads();

      const bool act0 = mine0 && pos0 >= n0 && lo0 < n0 + BN;
      const bool act1 = mine1 && pos1 >= n0 && lo1 < n0 + BN;
      if (__any_sync(0xffffffffu, act0 || act1)) {
        const __nv_bfloat16* tk = sK + buf * BN * kStride;
        const __nv_bfloat16* tv = sV + buf * BN * kStride;
        float s[BN / 8][4];
#pragma unroll
        for (int nb = 0; nb < BN / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
          if (kk * 16 >= a.head_dim) continue;
          uint32_t af[4];
          attn::ldmatrix_x4(af, sQ + (warp * 16 + (lane & 15)) * kStride + kk * 16 + (lane >> 4) * 8);
#pragma unroll
          for (int nb = 0; nb < BN / 8; nb += 2) {
            uint32_t bf[4];
            attn::ldmatrix_x4(bf, tk + (nb * 8 + (lane & 7) + ((lane >> 4) << 3)) * kStride + kk * 16 +
                                      ((lane >> 3) & 1) * 8);
            attn::mma_bf16(s[nb], af, bf[0], bf[1]);
            attn::mma_bf16(s[nb + 1], af, bf[2], bf[3]);
          }
        }
        // Mask, scale, online softmax over this tile (rows r = 0: g, 1: g + 8).
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const bool act = r == 0 ? act0 : act1;
          const int lo = r == 0 ? lo0 : lo1, pos = r == 0 ? pos0 : pos1;
          float mx = -INFINITY;
#pragma unroll
          for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
              const int p = n0 + nb * 8 + (lane % 4) * 2 + j;
              float& v = s[nb][2 * r + j];
              v = act && p >= lo && p <= pos ? v * scale_log2 : -INFINITY;
              mx = fmaxf(mx, v);
            }
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(m_run[r], mx);
          const float m_use = m_new == -INFINITY ? 0.0f : m_new;
          const float alpha = exp2f(m_run[r] - m_use);
          float sum = 0.0f;
#pragma unroll
          for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
              float& v = s[nb][2 * r + j];
              v = exp2f(v - m_use);
              sum += v;
            }
          l_run[r] = l_run[r] * alpha + sum;
          m_run[r] = m_new;
#pragma unroll
          for (int d = 0; d < HD / 8; ++d) {
            o[d][2 * r] *= alpha;
            o[d][2 * r + 1] *= alpha;
          }
        }
        // O += P V.
#pragma unroll
        for (int kc = 0; kc < BN / 16; ++kc) {
          const uint32_t pf[4] = {attn::pack_bf16(s[2 * kc][0], s[2 * kc][1]),
                                  attn::pack_bf16(s[2 * kc][2], s[2 * kc][3]),
                                  attn::pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                  attn::pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
          for (int d = 0; d < HD / 8; d += 2) {
            if (d * 8 >= a.head_dim) continue;
            uint32_t bf[4];
            attn::ldmatrix_x4_trans(
                bf, tv + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride + d * 8 + (lane >> 4) * 8);
            attn::mma_bf16(o[d], pf, bf[0], bf[1]);
            attn::mma_bf16(o[d + 1], pf, bf[2], bf[3]);
          }
        }
      }
      __syncthreads();  // the stage just read is the next load's target
    }
  }
  attn::cp_async_wait<0>();

  // Normalise and stage this warp's 16 entries in its own rows of sQ.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.0f ? 1.0f / l : 0.0f;
  }
  __syncwarp();
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) {
    const int col = d * 8 + (lane % 4) * 2;
    *reinterpret_cast<uint32_t*>(sQ + er0 * kStride + col) = attn::pack_bf16(o[d][0] * inv[0], o[d][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(sQ + er1 * kStride + col) = attn::pack_bf16(o[d][2] * inv[1], o[d][3] * inv[1]);
  }
  __syncwarp();
  for (int idx = lane; idx < 16 * kChunks; idx += 32) {
    const int r = warp * 16 + idx / kChunks, c = idx % kChunks;
    if (e_seq[r] < 0 || c >= valid_chunks) continue;
    const int e = e0 + r, t = e / G, g = e % G;
    *reinterpret_cast<uint4*>(a.out + int64_t(t) * a.ldo + int64_t(kvh * G + g) * a.head_dim + c * 8) =
        *reinterpret_cast<const uint4*>(sQ + r * kStride + c * 8);
  }
}

template <int HD, int BN>
void launch_prefill(const PagedAttention& a, cudaStream_t stream) {
  const int G = a.heads / a.kv_heads;
  const int64_t entries = int64_t(a.rows_cap) * G;
  const dim3 grid(unsigned((entries + kBM - 1) / kBM), unsigned(a.kv_heads));
  constexpr size_t smem = prefill_smem_bytes<HD, BN>();
  auto* kernel = attention_prefill_kernel<HD, BN>;
  if (smem > 48 * 1024)
    QLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const float scale_log2 = (1.0f / std::sqrt(float(a.head_dim))) * kLog2e;
  kernel<<<grid, kThreads, smem, stream>>>(a, scale_log2);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_prefill(const PagedAttention& a, cudaStream_t stream) {
  attn::check_args(a, "attention_prefill");
  QLLM_LAUNCH_CHECK(int64_t(a.rows_cap) * (a.heads / a.kv_heads) <= INT_MAX - kBM,
                    "attention_prefill: rows_cap %d x group %d is too large", a.rows_cap, a.heads / a.kv_heads);
  if (a.rows_cap == 0) return;
  if (a.head_dim <= 32)
    launch_prefill<32, 64>(a, stream);
  else if (a.head_dim <= 64)
    launch_prefill<64, 64>(a, stream);
  else if (a.head_dim <= 128)
    launch_prefill<128, 64>(a, stream);
  else
    launch_prefill<256, 32>(a, stream);
}

}  // namespace qllm::cuda
