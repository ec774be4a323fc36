// Router softmax + top-k (see router.h). One warp per row; lane l holds the
// experts l, l + 32, ... in registers (E/32 rounded up, a compile-time count:
// 1, 2, 4 or 8). Each of the K rounds is a warp argmax over (probability,
// expert index) ordered by probability, then by lower index, so equal
// probabilities pick the lower expert as the CPU reference does; lane j keeps
// the j-th choice and writes it at the end. The softmax follows ops.cpp
// (max-subtracted exp, one reciprocal of the sum) in fp32.
#include "kernels/router.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

#include <climits>

namespace qllm::cuda {
namespace {

constexpr int kWarps = 4;  // rows per block

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <int VPL>  // values per lane
__global__ void router_kernel(const float* __restrict__ logits, int E, int K, bool norm_topk_prob,
                              int32_t* __restrict__ topk_ids, float* __restrict__ topk_w, int rows_cap,
                              const int32_t* __restrict__ d_rows) {
  const int lane = int(threadIdx.x) & 31;
  const int row = int(blockIdx.x) * kWarps + int(threadIdx.x >> 5);
  if (row >= dev::active_rows(d_rows, rows_cap)) return;  // uniform over the warp
  const float* lr = logits + int64_t(row) * E;

  float p[VPL];
  float m = -INFINITY;
#pragma unroll
  for (int s = 0; s < VPL; ++s) {
    const int e = s * 32 + lane;
    p[s] = e < E ? lr[e] : -INFINITY;
    m = fmaxf(m, p[s]);
  }
  m = warp_max(m);
  float sum = 0.0f;
#pragma unroll
  for (int s = 0; s < VPL; ++s) {
    p[s] = s * 32 + lane < E ? expf(p[s] - m) : 0.0f;
    sum += p[s];
  }
  sum = dev::warp_sum(sum);
  const float inv = 1.0f / sum;
  // Probabilities are >= 0; -1 marks "not a candidate" (no expert, or taken).
#pragma unroll
  for (int s = 0; s < VPL; ++s) p[s] = s * 32 + lane < E ? p[s] * inv : -1.0f;

  float mine_p = 0.0f, chosen_sum = 0.0f;
  int mine_e = 0;
  for (int j = 0; j < K; ++j) {
    float bp = -1.0f;
    int be = INT_MAX;
#pragma unroll
    for (int s = 0; s < VPL; ++s)  // ascending expert index: strict > keeps the lower on ties
      if (p[s] > bp) {
        bp = p[s];
        be = s * 32 + lane;
      }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, bp, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (op > bp || (op == bp && oe < be)) {
        bp = op;
        be = oe;
      }
    }
#pragma unroll
    for (int s = 0; s < VPL; ++s)
      if (s * 32 + lane == be) p[s] = -1.0f;
    chosen_sum += bp;  // in choice order, as the CPU reference sums
    if (lane == j) {
      mine_p = bp;
      mine_e = be;
    }
  }
  if (lane < K) {
    topk_ids[int64_t(row) * K + lane] = mine_e;
    topk_w[int64_t(row) * K + lane] = norm_topk_prob ? mine_p / chosen_sum : mine_p;
  }
}

}  // namespace

void router_topk(const float* logits, int num_experts, int top_k, bool norm_topk_prob, int32_t* topk_ids,
                 float* topk_w, int rows_cap, const int32_t* d_rows, cudaStream_t stream) {
  const int E = num_experts, K = top_k;
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(E >= 1 && E <= kRouterMaxExperts, "num_experts = %d (at most %d)", E, kRouterMaxExperts);
  QLLM_LAUNCH_CHECK(K >= 1 && K <= E && K <= kRouterMaxTopK, "top_k = %d with %d experts (at most %d)", K, E,
                    kRouterMaxTopK);
  QLLM_LAUNCH_CHECK(logits && topk_ids && topk_w && d_rows, "null device pointer");
  const unsigned blocks = unsigned((rows_cap + kWarps - 1) / kWarps);
  const unsigned threads = kWarps * 32;
  if (E <= 32)
    router_kernel<1><<<blocks, threads, 0, stream>>>(logits, E, K, norm_topk_prob, topk_ids, topk_w, rows_cap, d_rows);
  else if (E <= 64)
    router_kernel<2><<<blocks, threads, 0, stream>>>(logits, E, K, norm_topk_prob, topk_ids, topk_w, rows_cap, d_rows);
  else if (E <= 128)
    router_kernel<4><<<blocks, threads, 0, stream>>>(logits, E, K, norm_topk_prob, topk_ids, topk_w, rows_cap, d_rows);
  else
    router_kernel<8><<<blocks, threads, 0, stream>>>(logits, E, K, norm_topk_prob, topk_ids, topk_w, rows_cap, d_rows);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
