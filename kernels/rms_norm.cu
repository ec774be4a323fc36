// RMSNorm kernels (see rms_norm.h).
//
// Row form: one block per row, 8 elements per thread and step, a deterministic
// block sum of squares; the row is read twice (the second read hits L1/L2), so
// in place is safe: every element is read and written by the same thread after
// the sum is complete. Per-head form: one warp per (row, head), two elements
// per lane and step, a warp sum.
#include "kernels/rms_norm.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kHeadWarps = 4;

template <typename Tin>
__global__ void rms_norm_rows_kernel(const Tin* x, int64_t ldx, const __nv_bfloat16* __restrict__ w,
                                     __nv_bfloat16* y, int64_t ldy, int n, float eps, int rows_cap,
                                     const int32_t* __restrict__ d_rows) {
  const int row = int(blockIdx.x);
  if (row >= dev::active_rows(d_rows, rows_cap)) return;  // uniform over the block
  const Tin* xr = x + int64_t(row) * ldx;
  __nv_bfloat16* yr = y + int64_t(row) * ldy;
  float ss = 0.0f;
  for (int c = int(threadIdx.x) * 8; c < n; c += kRowThreads * 8) {
    float v[8];
    dev::load8(xr + c, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) ss = fmaf(v[j], v[j], ss);
  }
  ss = dev::block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / float(n) + eps);
  for (int c = int(threadIdx.x) * 8; c < n; c += kRowThreads * 8) {
    float v[8], g[8];
    dev::load8(xr + c, v);
    dev::load8(w + c, g);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = g[j] * (v[j] * inv);
    dev::store8(yr + c, v);
  }
}

__global__ void rms_norm_heads_kernel(__nv_bfloat16* x, int64_t ld, const __nv_bfloat16* __restrict__ w,
                                      int heads, int head_dim, float eps, int rows_cap,
                                      const int32_t* __restrict__ d_rows) {
  const int row = int(blockIdx.x);
  const int head = int(blockIdx.y) * kHeadWarps + int(threadIdx.x >> 5);
  const int lane = int(threadIdx.x) & 31;
  if (row >= dev::active_rows(d_rows, rows_cap) || head >= heads) return;  // uniform over the warp
  __nv_bfloat162* xh = reinterpret_cast<__nv_bfloat162*>(x + int64_t(row) * ld + int64_t(head) * head_dim);
  const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(w);
  const int pairs = head_dim / 2;
  float ss = 0.0f;
  for (int i = lane; i < pairs; i += 32) {
    const float2 v = __bfloat1622float2(xh[i]);
    ss = fmaf(v.x, v.x, ss);
    ss = fmaf(v.y, v.y, ss);
  }
  ss = dev::warp_sum(ss);
  const float inv = 1.0f / sqrtf(ss / float(head_dim) + eps);
  for (int i = lane; i < pairs; i += 32) {
    const float2 v = __bfloat1622float2(xh[i]);
    const float2 g = __bfloat1622float2(w2[i]);
    xh[i] = __floats2bfloat162_rn(g.x * (v.x * inv), g.y * (v.y * inv));
  }
}

}  // namespace

void rms_norm(const float* x, const __nv_bfloat16* w, __nv_bfloat16* y, int rows_cap, int n, float eps,
              const int32_t* d_rows, cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(n > 0 && n % 8 == 0, "n = %d must be a positive multiple of 8", n);
  QLLM_LAUNCH_CHECK(eps > 0.0f, "eps = %g", double(eps));
  QLLM_LAUNCH_CHECK(aligned16(x) && aligned16(w) && aligned16(y), "x, w and y must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(d_rows != nullptr, "d_rows is null");
  rms_norm_rows_kernel<float><<<rows_cap, kRowThreads, 0, stream>>>(x, n, w, y, n, n, eps, rows_cap, d_rows);
  QLLM_CUDA_CHECK_LAUNCH();
}

void rms_norm_inplace(__nv_bfloat16* x, int64_t ld, const __nv_bfloat16* w, int rows_cap, int n,
                      float eps, const int32_t* d_rows, cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(n > 0 && n % 8 == 0, "n = %d must be a positive multiple of 8", n);
  QLLM_LAUNCH_CHECK(ld >= n && ld % 8 == 0, "ld = %lld must be >= n = %d and a multiple of 8",
                    static_cast<long long>(ld), n);
  QLLM_LAUNCH_CHECK(eps > 0.0f, "eps = %g", double(eps));
  QLLM_LAUNCH_CHECK(aligned16(x) && aligned16(w), "x and w must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(d_rows != nullptr, "d_rows is null");
  rms_norm_rows_kernel<__nv_bfloat16><<<rows_cap, kRowThreads, 0, stream>>>(x, ld, w, x, ld, n, eps, rows_cap,
                                                                            d_rows);
  QLLM_CUDA_CHECK_LAUNCH();
}

void rms_norm_heads_inplace(__nv_bfloat16* x, int64_t ld, const __nv_bfloat16* w, int rows_cap,
                            int heads, int head_dim, float eps, const int32_t* d_rows,
                            cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(heads > 0, "heads = %d", heads);
  QLLM_LAUNCH_CHECK(head_dim > 0 && head_dim % 2 == 0, "head_dim = %d must be a positive even number",
                    head_dim);
  QLLM_LAUNCH_CHECK(ld >= int64_t(heads) * head_dim && ld % 2 == 0,
                    "ld = %lld must be even and >= heads * head_dim = %d", static_cast<long long>(ld),
                    heads * head_dim);
  QLLM_LAUNCH_CHECK(eps > 0.0f, "eps = %g", double(eps));
  QLLM_LAUNCH_CHECK(reinterpret_cast<uintptr_t>(x) % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 4 == 0,
                    "x and w must be 4-byte aligned");
  QLLM_LAUNCH_CHECK(d_rows != nullptr, "d_rows is null");
  const dim3 grid(unsigned(rows_cap), unsigned((heads + kHeadWarps - 1) / kHeadWarps));
  rms_norm_heads_kernel<<<grid, kHeadWarps * 32, 0, stream>>>(x, ld, w, heads, head_dim, eps, rows_cap, d_rows);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
