// Weighted scatter-add (see scatter_add.h): one block per expert row, 8
// elements per thread and step.
#include "kernels/scatter_add.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void scatter_add_kernel(const T* __restrict__ y, int hidden, const int32_t* __restrict__ list_rows,
                                   const float* __restrict__ list_w, const int32_t* __restrict__ offsets,
                                   const int32_t* __restrict__ counts, int expert, float* __restrict__ x, int cap) {
  const int r = int(blockIdx.x);
  if (r >= dev::active_rows(counts + expert, cap)) return;
  const int at = offsets[expert] + r;
  const int dst = list_rows[at];
  const float w = list_w[at];
  const T* yr = y + int64_t(r) * hidden;
  float* xr = x + int64_t(dst) * hidden;
  for (int c = int(threadIdx.x) * 8; c < hidden; c += kThreads * 8) {
    float yv[8], xv[8];
    dev::load8(yr + c, yv);
    dev::load8(xr + c, xv);
#pragma unroll
    for (int j = 0; j < 8; ++j) xv[j] = __fadd_rn(xv[j], __fmul_rn(w, yv[j]));
    dev::store8(xr + c, xv);
  }
}

template <typename T>
void launch(const T* y, int hidden, const int32_t* list_rows, const float* list_w, const int32_t* offsets,
            const int32_t* counts, int expert, float* x, int cap, cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(cap > 0, "cap = %d", cap);
  QLLM_LAUNCH_CHECK(hidden > 0 && hidden % 8 == 0, "hidden = %d must be a positive multiple of 8", hidden);
  QLLM_LAUNCH_CHECK(expert >= 0, "expert = %d", expert);
  QLLM_LAUNCH_CHECK(aligned16(y) && aligned16(x), "y and x must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(list_rows && list_w && offsets && counts, "null device pointer");
  scatter_add_kernel<T><<<cap, kThreads, 0, stream>>>(y, hidden, list_rows, list_w, offsets, counts, expert, x, cap);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void scatter_add(const float* y, int hidden, const int32_t* list_rows, const float* list_w,
                 const int32_t* offsets, const int32_t* counts, int expert, float* x, int cap,
                 cudaStream_t stream) {
  launch(y, hidden, list_rows, list_w, offsets, counts, expert, x, cap, stream);
}

void scatter_add(const __nv_bfloat16* y, int hidden, const int32_t* list_rows, const float* list_w,
                 const int32_t* offsets, const int32_t* counts, int expert, float* x, int cap,
                 cudaStream_t stream) {
  launch(y, hidden, list_rows, list_w, offsets, counts, expert, x, cap, stream);
}

}  // namespace qllm::cuda
