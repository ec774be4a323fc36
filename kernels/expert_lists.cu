// Per-expert lists (see expert_lists.h), one block of 1024 threads:
//
//  1. counts: shared-memory atomics per expert (a count does not depend on
//     the order of the additions);
//  2. offsets: a block-wide inclusive scan of the counts (warp shuffles, then
//     the warp totals scanned by warp 0);
//  3. placement, a stable counting sort over the flat entries i = row * K + j
//     in chunks of 1024: an entry's place is run[e] (entries of e placed in
//     earlier chunks, starting at offsets[e]) + entries of e in earlier warps
//     of the chunk (per-warp counts in shared memory) + entries of e in
//     earlier lanes of its warp (__match_any_sync). Rows come out ascending
//     within an expert because a row's K choices name distinct experts and
//     the entries are placed in index order.
#include "kernels/expert_lists.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Inclusive sum over the block's threads in thread order (blockDim.x == kThreads).
__device__ int block_inclusive_scan(int v, int* warp_tot) {
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += t;
  }
  if (lane == 31) warp_tot[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int t = warp_tot[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += u;
    }
    warp_tot[lane] = t;
  }
  __syncthreads();
  return warp > 0 ? v + warp_tot[warp - 1] : v;
}

__global__ void __launch_bounds__(kThreads)
    expert_lists_kernel(const int32_t* __restrict__ ids, const float* __restrict__ tw, int K, int E, int rows_cap,
                        const int32_t* __restrict__ d_rows, int32_t* __restrict__ counts,
                        int32_t* __restrict__ offsets, int32_t* __restrict__ list_rows,
                        float* __restrict__ list_w, int32_t* d_error) {
  extern __shared__ int smem[];
  int* cnt = smem;          // [E]
  int* run = smem + E;      // [E] next free place of each expert
  int* wc = smem + 2 * E;   // [kWarps][E] entries of e in warp w of the chunk
  __shared__ int warp_tot[kWarps];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int n = dev::active_rows(d_rows, rows_cap) * K;

  for (int i = tid; i < (2 + kWarps) * E; i += kThreads) smem[i] = 0;
  __syncthreads();
  bool bad = false;
  for (int i = tid; i < n; i += kThreads) {
    const int e = ids[i];
    if (e >= 0 && e < E) atomicAdd(&cnt[e], 1);
    bad |= e >= E;
  }
  if (bad && d_error) *d_error = 1;
  __syncthreads();

  const int c = tid < E ? cnt[tid] : 0;
  const int incl = block_inclusive_scan(c, warp_tot);
  if (tid < E) {
    counts[tid] = c;
    offsets[tid] = incl - c;
    run[tid] = incl - c;
  }
  if (tid == E - 1) offsets[E] = incl;
  __syncthreads();

  for (int base = 0; base < n; base += kThreads) {  // n is the same for every thread
    const int i = base + tid;
    const int e = i < n ? ids[i] : -1;
    const bool valid = e >= 0 && e < E;
    const unsigned peers = __match_any_sync(0xffffffffu, valid ? e : -1);
    const bool leader = lane == __ffs(peers) - 1;
    if (valid && leader) wc[warp * E + e] = __popc(peers);
    __syncthreads();
    if (valid) {
      int place = run[e] + __popc(peers & ((1u << lane) - 1u));
      for (int w = 0; w < warp; ++w) place += wc[w * E + e];
      list_rows[place] = i / K;
      list_w[place] = tw[i];
    }
    __syncthreads();
    if (tid < E) {
      int placed = 0;
      for (int w = 0; w < kWarps; ++w) placed += wc[w * E + tid];
      run[tid] += placed;
    }
    __syncthreads();
    if (valid && leader) wc[warp * E + e] = 0;
    __syncthreads();
  }
}

}  // namespace

void expert_lists(const int32_t* topk_ids, const float* topk_w, int top_k, int num_experts, int rows_cap,
                  const int32_t* d_rows, int32_t* counts, int32_t* offsets, int32_t* list_rows, float* list_w,
                  int32_t* d_error, cudaStream_t stream) {
  const int E = num_experts, K = top_k;
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(E >= 1 && E <= kExpertListsMaxExperts, "num_experts = %d (at most %d)", E,
                    kExpertListsMaxExperts);
  QLLM_LAUNCH_CHECK(K >= 1 && K <= E, "top_k = %d with %d experts", K, E);
  QLLM_LAUNCH_CHECK(int64_t(rows_cap) * K <= int64_t(1) << 30, "rows_cap * top_k = %lld is too large",
                    static_cast<long long>(int64_t(rows_cap) * K));
  QLLM_LAUNCH_CHECK(topk_ids && topk_w && d_rows && counts && offsets && list_rows && list_w,
                    "null device pointer");
  const size_t smem = sizeof(int) * size_t(2 + kWarps) * size_t(E);
  expert_lists_kernel<<<1, kThreads, smem, stream>>>(topk_ids, topk_w, K, E, rows_cap, d_rows, counts, offsets,
                                                     list_rows, list_w, d_error);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
