// clip_qkv (see clip.h): one block per row, 8 elements per thread and step.
#include "kernels/clip.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void clip_kernel(__nv_bfloat16* __restrict__ x, int64_t ld, int width, float limit, int rows_cap,
                            const int32_t* __restrict__ d_rows) {
  const int row = int(blockIdx.x);
  if (row >= dev::active_rows(d_rows, rows_cap)) return;
  __nv_bfloat16* xr = x + int64_t(row) * ld;
  for (int c = int(threadIdx.x) * 8; c < width; c += kThreads * 8) {
    float v[8];
    dev::load8(xr + c, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = fminf(fmaxf(v[j], -limit), limit);
    dev::store8(xr + c, v);
  }
}

}  // namespace

void clip_inplace(__nv_bfloat16* x, int64_t ld, int width, float limit, int rows_cap, const int32_t* d_rows,
                  cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(width > 0 && width % 8 == 0, "width = %d must be a positive multiple of 8", width);
  QLLM_LAUNCH_CHECK(ld >= width && ld % 8 == 0, "ld = %lld must be >= width = %d and a multiple of 8",
                    static_cast<long long>(ld), width);
  QLLM_LAUNCH_CHECK(limit > 0.0f, "limit = %g must be positive", double(limit));
  QLLM_LAUNCH_CHECK(aligned16(x), "x must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(d_rows != nullptr, "d_rows is null");
  clip_kernel<<<rows_cap, kThreads, 0, stream>>>(x, ld, width, limit, rows_cap, d_rows);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
