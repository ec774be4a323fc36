// Token sampling on the device (sampling.h), one block of 1024 threads per
// row at a time:
//
//   1. argmax over the vocabulary (greedy rows stop here; for the others its
//      value is the max of the softmax)
//   2. top_k < vocab: radix select (four 8-bit passes over order-preserving
//      keys, warp-aggregated shared-memory histograms) finds the k-th key T
//      and how many of the logits equal to T are in the top k (the lowest ids)
//   3. compaction in vocabulary order of the candidates that are in the top k
//      and significant ((logit - max) / T >= -40) into the workspace, as
//      (~key << 32 | id), with the digit histograms of the next step
//   4. stable LSD radix sort of those on the key (8-bit digits, per-warp
//      ranks by __match_any_sync, per-tile digit offsets): descending logit,
//      ascending id among equals, the CPU sampler's order
//   5. running sums by thread 0 over chunks staged in shared memory (the
//      block computes the exps of the chunk in parallel): the sum of prob,
//      each prefix (kept in the workspace), then the nucleus prefix of
//      prob / sum, then a binary search of the prefixes for the draw
#include "kernels/sampling.h"

#include "engine/model/synthetic_init.h"
#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

#include <climits>

namespace qllm::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kItems = 4;      // consecutive logits per thread in the compaction
constexpr int kChunk = 2048;   // probabilities per staged chunk of the running sums
constexpr double kSignificant = -40.0;
constexpr unsigned kFull = 0xffffffffu;
static_assert(kThreads == 1024 && kWarps == 32, "the block scans and histogram zeroing assume 32 warps");

// Order-preserving key: a larger logit has a larger key; -0 and +0 are equal.
__device__ __forceinline__ uint32_t order_key(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u << 1) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// engine/cpu/sampling.cpp sampling_uniform.
__device__ __forceinline__ double sampling_uniform(uint64_t seed, uint64_t step) {
  const uint64_t h = synth::splitmix64(synth::splitmix64(seed ^ 0x5A4D504C45ull) + step);
  return double(h >> 11) * (1.0 / 9007199254740992.0);
}

struct Smem {
  union {
    int wcnt[kWarps][256];  // sort: per-warp digit counts, then offsets
    struct {
      double p[kChunk];    // a chunk of terms
      double pre[kChunk];  // their running sums
    } run;
  } u;
  int hist[4][256];  // digit counts of the candidates' keys (hist[0]: also the select's)
  int base[256];
  int tile_total[256];
  int scan[kWarps];
  int scan_total;
  float red_v[kWarps];
  int red_i[kWarps];
  int ival[4];
  int skip[4];
  double dval;
};

__device__ __forceinline__ int lane_id() { return int(threadIdx.x) & 31; }
__device__ __forceinline__ int warp_id() { return int(threadIdx.x) >> 5; }

// Adds each lane's bin (-1: none) to hist with one atomic per distinct bin.
// All 32 lanes call it.
__device__ __forceinline__ void warp_hist_add(int* hist, int bin) {
  const unsigned peers = __match_any_sync(kFull, bin);
  if (bin >= 0 && (peers & ((1u << lane_id()) - 1)) == 0) atomicAdd(&hist[bin], __popc(peers));
}

// Exclusive prefix sum over the block in thread order; every thread calls it.
__device__ int block_exclusive_scan(int x, int& total, Smem& sh) {
  const int lane = lane_id(), warp = warp_id();
  int incl = x;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) sh.scan[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int w = sh.scan[lane];
    int wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(kFull, wi, o);
      if (lane >= o) wi += y;
    }
    sh.scan[lane] = wi - w;
    if (lane == 31) sh.scan_total = wi;
  }
  __syncthreads();
  total = sh.scan_total;
  const int r = sh.scan[warp] + incl - x;
  __syncthreads();
  return r;
}

// The highest value and, among equal ones, the lowest index.
__device__ void block_argmax(const float* row, int V, Smem& sh, float& v_out, int& i_out) {
  float bv = -INFINITY;
  int bi = INT_MAX;
  for (int i = int(threadIdx.x); i < V; i += kThreads) {
    const float v = row[i];
    if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, bv, o);
    const int oi = __shfl_xor_sync(kFull, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
  }
  if (lane_id() == 0) sh.red_v[warp_id()] = bv, sh.red_i[warp_id()] = bi;
  __syncthreads();
  if (warp_id() == 0) {
    bv = sh.red_v[lane_id()];
    bi = sh.red_i[lane_id()];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, o);
      const int oi = __shfl_xor_sync(kFull, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane_id() == 0) sh.red_v[0] = bv, sh.red_i[0] = bi;
  }
  __syncthreads();
  v_out = sh.red_v[0];
  i_out = sh.red_i[0];
  __syncthreads();
}

// The key T of the k-th largest logit and how many logits equal to T belong
// to the top k (1 <= k <= V).
__device__ void radix_select(const float* row, int V, int k, Smem& sh, uint32_t& T, int& need) {
  const int tid = int(threadIdx.x), lane = lane_id();
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (tid < 256) sh.hist[0][tid] = 0;
    __syncthreads();
    for (int base = 0; base < V; base += kThreads) {
      const int i = base + tid;
      int bin = -1;
      if (i < V) {
        const uint32_t key = order_key(row[i]);
        if ((key & mask) == prefix) bin = int((key >> shift) & 255u);
      }
      warp_hist_add(sh.hist[0], bin);
    }
    __syncthreads();
    if (tid < 32) {
      // Lane l holds digits 255 - 8l - j, j = 0..7: highest digits first.
      int c[8], s = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) s += c[j] = sh.hist[0][255 - 8 * lane - j];
      int incl = s;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += y;
      }
      int above = incl - s;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (above < remaining && above + c[j] >= remaining) sh.ival[0] = 255 - 8 * lane - j, sh.ival[1] = above;
        above += c[j];
      }
    }
    __syncthreads();
    remaining -= sh.ival[1];
    prefix |= uint32_t(sh.ival[0]) << shift;
    mask |= 0xffu << shift;
    __syncthreads();
  }
  T = prefix;
  need = remaining;
}

// Writes the candidates, in vocabulary order, to out as (~key << 32 | id) and
// counts the digits of ~key in sh.hist. Returns their number.
__device__ int compact(const float* row, int V, bool vec4, bool topk, uint32_t T, int need, double m,
                       double inv_t, uint64_t* out, Smem& sh) {
  const int tid = int(threadIdx.x);
  sh.hist[tid >> 8][tid & 255] = 0;  // 1024 threads, 4 x 256 bins
  __syncthreads();
  int count = 0, ties = 0;
  for (int base = 0; base < V; base += kThreads * kItems) {
    const int i0 = base + tid * kItems;
    float v[kItems];
    if (vec4 && i0 + kItems <= V) {
      const float4 f = *reinterpret_cast<const float4*>(row + i0);
      v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
#pragma unroll
      for (int j = 0; j < kItems; ++j) v[j] = i0 + j < V ? row[i0 + j] : -INFINITY;
    }
    uint32_t key[kItems];
    bool tie[kItems], sig[kItems];
    int n_tie = 0;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const bool valid = i0 + j < V;
      key[j] = order_key(v[j]);
      sig[j] = valid && (double(v[j]) - m) * inv_t >= kSignificant;
      tie[j] = valid && topk && key[j] == T;
      n_tie += tie[j];
    }
    // Ties at T are in the top k in vocabulary order, `need` of them.
    int total_ties;
    int rank = ties + block_exclusive_scan(n_tie, total_ties, sh);
    int n_take = 0;
    bool take[kItems];
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      take[j] = sig[j] && (!topk || key[j] > T || (tie[j] && rank < need));
      rank += tie[j];
      n_take += take[j];
    }
    int total_take;
    int pos = count + block_exclusive_scan(n_take, total_take, sh);
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const uint32_t dk = ~key[j];
      if (take[j]) out[pos++] = (uint64_t(dk) << 32) | uint32_t(i0 + j);
#pragma unroll
      for (int d = 0; d < 4; ++d) warp_hist_add(sh.hist[d], take[j] ? int((dk >> (8 * d)) & 255u) : -1);
    }
    ties += total_ties;
    count += total_take;
  }
  __syncthreads();
  return count;
}

// Stable LSD radix sort of L values on their high 32 bits (ascending), from a
// (b: scratch) using the digit counts in sh.hist. Returns the buffer that
// holds the result.
__device__ uint64_t* lsd_sort(uint64_t* a, uint64_t* b, int L, Smem& sh) {
  const int tid = int(threadIdx.x), lane = lane_id(), warp = warp_id();
  int* wcnt = &sh.u.wcnt[0][0];
  for (int i = tid; i < kWarps * 256; i += kThreads) wcnt[i] = 0;
  if (tid < 4) sh.skip[tid] = 0;
  __syncthreads();
  if (sh.hist[tid >> 8][tid & 255] == L) sh.skip[tid >> 8] = 1;  // one digit for all: nothing moves
  __syncthreads();
  const unsigned lanes_below = (1u << lane) - 1;
  for (int pass = 0; pass < 4; ++pass) {
    if (sh.skip[pass]) continue;
    const int shift = 32 + 8 * pass;
    if (tid < 32) {  // exclusive scan of the pass's counts into base
      int c[8], s = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) s += c[j] = sh.hist[pass][8 * lane + j];
      int incl = s;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += y;
      }
      int run = incl - s;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        sh.base[8 * lane + j] = run;
        run += c[j];
      }
    }
    __syncthreads();
    for (int tile = 0; tile < L; tile += kThreads) {
      const int i = tile + tid;
      const bool valid = i < L;
      const uint64_t x = valid ? a[i] : 0;
      const int d = valid ? int((x >> shift) & 255u) : -1;
      const unsigned peers = __match_any_sync(kFull, d);
      const int rank = __popc(peers & lanes_below);
      if (valid && rank == 0) sh.u.wcnt[warp][d] = __popc(peers);
      __syncthreads();
      if (tid < 256) {
        int run = 0;
#pragma unroll 8
        for (int w = 0; w < kWarps; ++w) {
          const int c = sh.u.wcnt[w][tid];
          sh.u.wcnt[w][tid] = run;
          run += c;
        }
        sh.tile_total[tid] = run;
      }
      __syncthreads();
      if (valid) b[sh.base[d] + sh.u.wcnt[warp][d] + rank] = x;
      __syncthreads();
      if (tid < 256) {
        sh.base[tid] += sh.tile_total[tid];
#pragma unroll 8
        for (int w = 0; w < kWarps; ++w) sh.u.wcnt[w][tid] = 0;
      }
      __syncthreads();
    }
    uint64_t* t = a;
    a = b;
    b = t;
  }
  return a;
}

// prob of a sorted candidate: exp((logit - m) * inv_t), as the CPU sampler.
__device__ __forceinline__ double cand_prob(uint64_t c, double m, double inv_t) {
  return exp((double(key_value(~uint32_t(c >> 32))) - m) * inv_t);
}

__global__ void __launch_bounds__(kThreads)
    sampling_kernel(const float* logits, int64_t ld, int V, bool vec4, const SamplingRow* params,
                    const int32_t* d_rows, int rows_cap, int32_t* tokens, uint64_t* workspace) {
  __shared__ Smem sh;
  const int tid = int(threadIdx.x);
  const int rows = dev::active_rows(d_rows, rows_cap);
  uint64_t* buf0 = workspace + int64_t(blockIdx.x) * 2 * V;
  uint64_t* buf1 = buf0 + V;
  for (int r = int(blockIdx.x); r < rows; r += int(gridDim.x)) {
    const SamplingRow P = params[r];
    const float* row = logits + int64_t(r) * ld;
    float vmax;
    int imax;
    block_argmax(row, V, sh, vmax, imax);
    if (P.temperature <= 0.0 || P.top_k == 1) {
      if (tid == 0) tokens[r] = imax;
      continue;
    }
    const double m = vmax;
    const int k = P.top_k > 0 && P.top_k < V ? P.top_k : V;
    const double inv_t = 1.0 / P.temperature;
    const bool topk = k < V;
    uint32_t T = 0;
    int need = 0;
    if (topk) radix_select(row, V, k, sh, T, need);
    const int L = compact(row, V, vec4, topk, T, need, m, inv_t, buf0, sh);
    if (L == 0) {  // only for a temperature so small that 1 / temperature is inf
      if (tid == 0) tokens[r] = imax;
      continue;
    }
    const uint64_t* cand = lsd_sort(buf0, buf1, L, sh);
    double* pre = reinterpret_cast<double*>(cand == buf0 ? buf1 : buf0);

    // Sum of prob and its running sums, in candidate order.
    double acc = 0.0;  // thread 0's
    int n_done = 0;
    for (int c0 = 0; c0 < L; c0 += kChunk) {
      const int n = min(kChunk, L - c0);
      for (int i = tid; i < n; i += kThreads) sh.u.run.p[i] = cand_prob(cand[c0 + i], m, inv_t);
      __syncthreads();
      if (tid == 0) {
        for (int i = 0; i < n; ++i) {
          acc += sh.u.run.p[i];
          sh.u.run.pre[i] = acc;
        }
        // Terms from here on are below half an ulp of acc: they cannot change it.
        sh.ival[0] = sh.u.run.p[n - 1] * 0x1p55 < acc;
        sh.dval = acc;
      }
      __syncthreads();
      for (int i = tid; i < n; i += kThreads) pre[c0 + i] = sh.u.run.pre[i];
      n_done = c0 + n;
      if (sh.ival[0]) break;
    }
    __syncthreads();
    const double sum = sh.dval;

    // Nucleus: the shortest prefix whose running sum of prob / sum reaches
    // top_p. Past n_done the terms cannot move that running sum either.
    int keep = k;
    if (P.top_p < 1.0) {
      if (tid == 0) sh.ival[1] = -1;
      double c = 0.0;  // thread 0's
      for (int c0 = 0; c0 < n_done; c0 += kChunk) {
        const int n = min(kChunk, n_done - c0);
        for (int i = tid; i < n; i += kThreads) sh.u.run.p[i] = cand_prob(cand[c0 + i], m, inv_t) / sum;
        __syncthreads();
        if (tid == 0)
          for (int i = 0; i < n; ++i) {
            c += sh.u.run.p[i];
            if (c >= P.top_p) {
              sh.ival[1] = c0 + i + 1;
              break;
            }
          }
        __syncthreads();
        if (sh.ival[1] >= 0) break;
      }
      if (sh.ival[1] >= 0) keep = sh.ival[1];
    }

    // The draw: the first candidate whose running sum exceeds u.
    if (tid == 0) {
      const double kept = keep <= n_done ? pre[keep - 1] : sum;
      const double u = sampling_uniform(P.seed, P.step) * kept;
      const int end = keep < n_done ? keep : n_done;
      int lo = 0, hi = end;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (pre[mid] > u)
          hi = mid;
        else
          lo = mid + 1;
      }
      tokens[r] = int32_t(uint32_t(cand[lo < end ? lo : end - 1]));
    }
    __syncthreads();
  }
}

}  // namespace

size_t sampling_workspace_bytes(int vocab, int blocks) {
  return size_t(blocks > 0 ? blocks : 0) * size_t(vocab > 0 ? vocab : 0) * 2 * sizeof(uint64_t);
}

void sample_tokens(const float* logits, int64_t ld, int vocab, const SamplingRow* d_params,
                   const int32_t* d_rows, int rows_cap, int32_t* tokens, void* workspace,
                   size_t workspace_bytes, int blocks, cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(vocab > 0 && ld >= vocab, "sample_tokens: vocab %d, ld %lld", vocab, static_cast<long long>(ld));
  QLLM_LAUNCH_CHECK(rows_cap >= 0 && blocks > 0, "sample_tokens: rows_cap %d, blocks %d", rows_cap, blocks);
  QLLM_LAUNCH_CHECK(logits && d_params && d_rows && tokens && workspace, "sample_tokens: a device pointer is null");
  const size_t need = sampling_workspace_bytes(vocab, blocks);
  QLLM_LAUNCH_CHECK(workspace_bytes >= need, "sample_tokens: workspace of %zu bytes, %zu needed", workspace_bytes,
                    need);
  QLLM_LAUNCH_CHECK(reinterpret_cast<uintptr_t>(workspace) % 16 == 0, "sample_tokens: workspace not 16-byte aligned");
  if (rows_cap == 0) return;
  const bool vec4 = reinterpret_cast<uintptr_t>(logits) % 16 == 0 && ld % 4 == 0;
  const int grid = blocks < rows_cap ? blocks : rows_cap;
  sampling_kernel<<<grid, kThreads, 0, stream>>>(logits, ld, vocab, vec4, d_params, d_rows, rows_cap, tokens,
                                                 static_cast<uint64_t*>(workspace));
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
