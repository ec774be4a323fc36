// Flash-decoding over the paged KV cache (attention_decode.h).
//
// Split kernel: block = 4 warps for one (row, kv head, head group, split).
// The M dimension of the tensor-core tiles holds the (up to 16) q heads of the
// group that share the kv head, padded with zero rows. The split's keys stream
// through shared memory in tiles of 64 positions (two-stage cp.async); warp w
// takes keys [16w, 16w + 16) of each tile with its own running max, sum and
// accumulator (exp2 domain, fp32). At the end the four warps are merged
// through shared memory; the block then writes the row's output (the row
// uses one split) or its partial (m, l, acc) to the workspace.
//
// Combine kernel: block per (row, q head) of the rows that used more than one
// split: out = sum_s acc_s 2^(m_s - M) / sum_s l_s 2^(m_s - M), M = max m_s.
#include "kernels/attention_decode.h"

#include "kernels/attention_mma.cuh"
#include "kernels/cuda_check.h"
#include "kernels/launch_check.h"

#include <algorithm>
#include <climits>
#include <cmath>

namespace qllm::cuda {
namespace {

using attn::kLog2e;

constexpr int kThreads = 128;  // 4 warps
constexpr int kBN = 64;        // positions per K/V tile, 16 per warp
constexpr int kHeadsPerBlock = 16;
constexpr int kMinSplit = 256;  // fewest keys a split gets
constexpr int kMaxSplits = 64;

// Keys per split of a row with n keys (both kernels agree on it).
__device__ __forceinline__ int split_len(int n, int num_splits) {
  const int per = ((n + num_splits - 1) / num_splits + kBN - 1) / kBN * kBN;
  return per > kMinSplit ? per : kMinSplit;
}

struct Workspace {
  float2* ml;  // [rows_cap][heads][num_splits]: running max (log2 units), sum
  float* acc;  // [rows_cap][heads][num_splits][head_dim]: unnormalised output
};

template <int HD>
constexpr size_t decode_smem_bytes() {
  return size_t(kHeadsPerBlock + 4 * kBN) * (HD + 8) * sizeof(__nv_bfloat16);
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(const PagedAttention a, int num_splits, float scale_log2, Workspace ws) {
  static_assert(HD % 32 == 0);
  constexpr int kStride = HD + 8;
  constexpr int kChunks = HD / 8;
  constexpr int kOStride = HD + 4;  // fp32 rows of the warp merge
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [16][kStride]
  __nv_bfloat16* sK = sQ + kHeadsPerBlock * kStride;               // [2][kBN][kStride]
  __nv_bfloat16* sV = sK + 2 * kBN * kStride;                      // [2][kBN][kStride]
  float* sO = reinterpret_cast<float*>(sK);                        // [4][16][kOStride], after the loop
  __shared__ float sM[4][kHeadsPerBlock], sL[4][kHeadsPerBlock];

  const int rows = attn::active_rows(a);
  const int t = int(blockIdx.x);
  if (t >= rows) return;
  const int sp = int(blockIdx.z);
  PagedAttention first = a;  // only the first split reports a bad row
  if (sp != 0) first.d_error = nullptr;
  const attn::RowInfo row = attn::row_info(first, t, rows);
  if (row.seq < 0) return;
  const int n_keys = row.pos - row.lo + 1;
  const int len = split_len(n_keys, num_splits);
  const int n_used = (n_keys + len - 1) / len;
  if (sp >= n_used) return;
  const int k_begin = row.lo + sp * len;
  const int k_last = min(row.pos, k_begin + len - 1);

  const int G = a.heads / a.kv_heads;
  const int hgroups = (G + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const int kvh = int(blockIdx.y) / hgroups;
  const int g0 = (int(blockIdx.y) % hgroups) * kHeadsPerBlock;
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int valid_chunks = a.head_dim / 8;

  // Q: the group's heads g0.., zeros past G and past head_dim.
#pragma unroll
  for (int i = 0; i < (kHeadsPerBlock * kChunks + kThreads - 1) / kThreads; ++i) {
    const int idx = tid + i * kThreads;
    if ((kHeadsPerBlock * kChunks) % kThreads != 0 && idx >= kHeadsPerBlock * kChunks) break;
    const int r = idx / kChunks, c = idx % kChunks;
    const bool ok = g0 + r < G && c < valid_chunks;
    const __nv_bfloat16* src =
        ok ? a.q + int64_t(t) * a.ldq + int64_t(kvh * G + g0 + r) * a.head_dim + c * 8 : a.q;
    attn::cp_async16(sQ + r * kStride + c * 8, src, ok);
  }
  attn::cp_async_commit();

  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  const int n_tiles = (k_last - k_begin) / kBN + 1;
  attn::load_kv_tile<HD, kBN, kThreads>(a, kvh, row.seq, k_begin, k_last, sK, sV);
  attn::cp_async_commit();
  for (int it = 0; it < n_tiles; ++it) {
    const int buf = it & 1;
    const int n0 = k_begin + it * kBN;
    if (it + 1 < n_tiles)
      attn::load_kv_tile<HD, kBN, kThreads>(a, kvh, row.seq, n0 + kBN, k_last, sK + (buf ^ 1) * kBN * kStride,
                                            sV + (buf ^ 1) * kBN * kStride);
    attn::cp_async_commit();
    attn::cp_async_wait<1>();
    __syncthreads();

    const int w0 = n0 + warp * 16;  // this warp's first position
    if (w0 <= k_last) {
      const __nv_bfloat16* tk = sK + buf * kBN * kStride + warp * 16 * kStride;
      const __nv_bfloat16* tv = sV + buf * kBN * kStride + warp * 16 * kStride;
      float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        if (kk * 16 >= a.head_dim) continue;
        uint32_t af[4], bf[4];
        attn::ldmatrix_x4(af, sQ + (lane & 15) * kStride + kk * 16 + (lane >> 4) * 8);
        attn::ldmatrix_x4(bf, tk + ((lane & 7) + ((lane >> 4) << 3)) * kStride + kk * 16 + ((lane >> 3) & 1) * 8);
        attn::mma_bf16(s[0], af, bf[0], bf[1]);
        attn::mma_bf16(s[1], af, bf[2], bf[3]);
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < 2; ++nb)
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            const int p = w0 + nb * 8 + (lane % 4) * 2 + j;
            float& v = s[nb][2 * r + j];
            v = p <= k_last ? v * scale_log2 : -INFINITY;
            mx = fmaxf(mx, v);
          }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[r], mx);  // finite: position w0 is visible
        const float alpha = exp2f(m_run[r] - m_new);
        float sum = 0.0f;
#pragma unroll
        for (int nb = 0; nb < 2; ++nb)
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            float& v = s[nb][2 * r + j];
            v = exp2f(v - m_new);
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
      const uint32_t pf[4] = {attn::pack_bf16(s[0][0], s[0][1]), attn::pack_bf16(s[0][2], s[0][3]),
                              attn::pack_bf16(s[1][0], s[1][1]), attn::pack_bf16(s[1][2], s[1][3])};
#pragma unroll
      for (int d = 0; d < HD / 8; d += 2) {
        if (d * 8 >= a.head_dim) continue;
        uint32_t bf[4];
        attn::ldmatrix_x4_trans(bf, tv + ((lane & 7) + ((lane >> 3) & 1) * 8) * kStride + d * 8 + (lane >> 4) * 8);
        attn::mma_bf16(o[d], pf, bf[0], bf[1]);
        attn::mma_bf16(o[d + 1], pf, bf[2], bf[3]);
      }
    }
    __syncthreads();  // the stage just read is the next load's target
  }
  attn::cp_async_wait<0>();
  __syncthreads();  // sK/sV are free: they hold the merge now

  // Merge the four warps.
  const int g = lane / 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (lane % 4 == 0) {
      sM[warp][g + 8 * r] = m_run[r];
      sL[warp][g + 8 * r] = l;
    }
  }
  float* wo = sO + warp * kHeadsPerBlock * kOStride;
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) {
    const int col = d * 8 + (lane % 4) * 2;
    *reinterpret_cast<float2*>(wo + g * kOStride + col) = make_float2(o[d][0], o[d][1]);
    *reinterpret_cast<float2*>(wo + (g + 8) * kOStride + col) = make_float2(o[d][2], o[d][3]);
  }
  __syncthreads();

  const int heads_here = min(kHeadsPerBlock, G - g0);
  for (int idx = tid; idx < heads_here * a.head_dim; idx += kThreads) {
    const int i = idx / a.head_dim, d = idx % a.head_dim;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; ++w) M = fmaxf(M, sM[w][i]);
    float L = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      if (sM[w][i] == -INFINITY) continue;  // a warp that saw no key
      const float f = exp2f(sM[w][i] - M);
      L += sL[w][i] * f;
      acc += sO[(w * kHeadsPerBlock + i) * kOStride + d] * f;
    }
    const int head = kvh * G + g0 + i;
    if (n_used == 1) {
      a.out[int64_t(t) * a.ldo + int64_t(head) * a.head_dim + d] = __float2bfloat16_rn(acc / L);
    } else {
      const int64_t part = (int64_t(t) * a.heads + head) * num_splits + sp;
      ws.acc[part * a.head_dim + d] = acc;
      if (d == 0) ws.ml[part] = make_float2(M, L);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    attention_decode_combine_kernel(const PagedAttention a, int num_splits, Workspace ws) {
  const int rows = attn::active_rows(a);
  const int t = int(blockIdx.x), head = int(blockIdx.y);
  if (t >= rows) return;
  PagedAttention quiet = a;  // the split kernel reported bad rows
  quiet.d_error = nullptr;
  const attn::RowInfo row = attn::row_info(quiet, t, rows);
  if (row.seq < 0) return;
  const int n_keys = row.pos - row.lo + 1;
  const int n_used = (n_keys + split_len(n_keys, num_splits) - 1) / split_len(n_keys, num_splits);
  if (n_used <= 1) return;
  const int64_t part0 = (int64_t(t) * a.heads + head) * num_splits;
  float M = -INFINITY;
  for (int s = 0; s < n_used; ++s) M = fmaxf(M, ws.ml[part0 + s].x);
  float L = 0.0f;
  for (int s = 0; s < n_used; ++s) {
    const float2 ml = ws.ml[part0 + s];
    L += ml.y * exp2f(ml.x - M);
  }
  const float inv = 1.0f / L;
  for (int d = int(threadIdx.x); d < a.head_dim; d += kThreads) {
    float acc = 0.0f;
    for (int s = 0; s < n_used; ++s) acc += ws.acc[(part0 + s) * a.head_dim + d] * exp2f(ws.ml[part0 + s].x - M);
    a.out[int64_t(t) * a.ldo + int64_t(head) * a.head_dim + d] = __float2bfloat16_rn(acc * inv);
  }
}

Workspace carve(const PagedAttention& a, int num_splits, void* workspace) {
  Workspace ws;
  ws.ml = static_cast<float2*>(workspace);
  ws.acc = reinterpret_cast<float*>(ws.ml + int64_t(a.rows_cap) * a.heads * num_splits);
  return ws;
}

template <int HD>
void launch_decode(const PagedAttention& a, int num_splits, const Workspace& ws, cudaStream_t stream) {
  const int G = a.heads / a.kv_heads;
  const int hgroups = (G + kHeadsPerBlock - 1) / kHeadsPerBlock;
  const dim3 grid(unsigned(a.rows_cap), unsigned(a.kv_heads * hgroups), unsigned(num_splits));
  constexpr size_t smem = decode_smem_bytes<HD>();
  auto* kernel = attention_decode_kernel<HD>;
  if (smem > 48 * 1024)
    QLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const float scale_log2 = (1.0f / std::sqrt(float(a.head_dim))) * kLog2e;
  kernel<<<grid, kThreads, smem, stream>>>(a, num_splits, scale_log2, ws);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

int attention_decode_splits(int rows_cap, int heads, int kv_heads, int max_seq_len, int sm_count) {
  QLLM_LAUNCH_CHECK(rows_cap > 0 && heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && max_seq_len > 0,
                    "attention_decode_splits: rows_cap %d, heads %d, kv_heads %d, max_seq_len %d", rows_cap,
                    heads, kv_heads, max_seq_len);
  const int G = heads / kv_heads;
  const int64_t blocks = int64_t(rows_cap) * kv_heads * ((G + kHeadsPerBlock - 1) / kHeadsPerBlock);
  const int64_t want = (2 * int64_t(std::max(sm_count, 1)) + blocks - 1) / blocks;
  const int most = std::min(kMaxSplits, std::max(1, (max_seq_len + kMinSplit - 1) / kMinSplit));
  return int(std::clamp<int64_t>(want, 1, most));
}

size_t attention_decode_workspace_bytes(int rows_cap, int heads, int head_dim, int num_splits) {
  if (num_splits <= 1) return 0;
  return size_t(rows_cap) * size_t(heads) * size_t(num_splits) * (size_t(head_dim) + 2) * sizeof(float);
}

void attention_decode(const PagedAttention& a, int num_splits, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream) {
  attn::check_args(a, "attention_decode");
  QLLM_LAUNCH_CHECK(num_splits >= 1 && num_splits <= 65535, "attention_decode: num_splits %d", num_splits);
  QLLM_LAUNCH_CHECK(a.rows_cap <= INT_MAX && int64_t(a.kv_heads) * ((a.heads / a.kv_heads + 15) / 16) <= 65535,
                    "attention_decode: kv_heads %d too many for the grid", a.kv_heads);
  const size_t need = attention_decode_workspace_bytes(a.rows_cap, a.heads, a.head_dim, num_splits);
  QLLM_LAUNCH_CHECK(workspace_bytes >= need && (need == 0 || workspace != nullptr),
                    "attention_decode: workspace of %zu bytes, %zu needed", workspace_bytes, need);
  QLLM_LAUNCH_CHECK(reinterpret_cast<uintptr_t>(workspace) % 16 == 0, "attention_decode: workspace not 16-byte aligned");
  if (a.rows_cap == 0) return;
  const Workspace ws = need ? carve(a, num_splits, workspace) : Workspace{nullptr, nullptr};
  if (a.head_dim <= 32)
    launch_decode<32>(a, num_splits, ws, stream);
  else if (a.head_dim <= 64)
    launch_decode<64>(a, num_splits, ws, stream);
  else if (a.head_dim <= 128)
    launch_decode<128>(a, num_splits, ws, stream);
  else
    launch_decode<256>(a, num_splits, ws, stream);
  if (num_splits > 1) {
    attention_decode_combine_kernel<<<dim3(unsigned(a.rows_cap), unsigned(a.heads)), kThreads, 0, stream>>>(
        a, num_splits, ws);
    QLLM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace qllm::cuda
