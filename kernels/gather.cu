// Expert gather (see gather.h): one block per output row, 16 bytes per thread
// and step.
#include "kernels/gather.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void gather_kernel(const __nv_bfloat16* __restrict__ x, int hidden, const int32_t* __restrict__ list_rows,
                              const int32_t* __restrict__ offsets, const int32_t* __restrict__ counts, int expert,
                              __nv_bfloat16* __restrict__ out, int cap) {
  const int r = int(blockIdx.x);
  if (r >= dev::active_rows(counts + expert, cap)) return;
  const int src = list_rows[offsets[expert] + r];
  const uint4* s = reinterpret_cast<const uint4*>(x + int64_t(src) * hidden);
  uint4* d = reinterpret_cast<uint4*>(out + int64_t(r) * hidden);
  for (int c = int(threadIdx.x); c < hidden / 8; c += kThreads) d[c] = s[c];
}

}  // namespace

void gather_rows(const __nv_bfloat16* x, int hidden, const int32_t* list_rows, const int32_t* offsets,
                 const int32_t* counts, int expert, __nv_bfloat16* out, int cap, cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(cap > 0, "cap = %d", cap);
  QLLM_LAUNCH_CHECK(hidden > 0 && hidden % 8 == 0, "hidden = %d must be a positive multiple of 8", hidden);
  QLLM_LAUNCH_CHECK(expert >= 0, "expert = %d", expert);
  QLLM_LAUNCH_CHECK(aligned16(x) && aligned16(out), "x and out must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(list_rows && offsets && counts, "null device pointer");
  gather_kernel<<<cap, kThreads, 0, stream>>>(x, hidden, list_rows, offsets, counts, expert, out, cap);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
