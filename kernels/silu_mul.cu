// SiLU(gate) * up (see silu_mul.h): one block per row, 8 outputs per thread
// and step, fp32 arithmetic with the accurate expf.
#include "kernels/silu_mul.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void silu_mul_kernel(const __nv_bfloat16* __restrict__ gate_up, int ffn, __nv_bfloat16* __restrict__ out,
                                int rows_cap, const int32_t* __restrict__ d_rows) {
  const int row = int(blockIdx.x);
  if (row >= dev::active_rows(d_rows, rows_cap)) return;
  const __nv_bfloat16* g = gate_up + int64_t(row) * 2 * ffn;
  const __nv_bfloat16* u = g + ffn;
  __nv_bfloat16* o = out + int64_t(row) * ffn;
  for (int c = int(threadIdx.x) * 8; c < ffn; c += kThreads * 8) {
    float gv[8], uv[8];
    dev::load8(g + c, gv);
    dev::load8(u + c, uv);
#pragma unroll
    for (int j = 0; j < 8; ++j) gv[j] = gv[j] / (1.0f + expf(-gv[j])) * uv[j];
    dev::store8(o + c, gv);
  }
}

}  // namespace

void silu_mul(const __nv_bfloat16* gate_up, int ffn, __nv_bfloat16* out, int rows_cap, const int32_t* d_rows,
              cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(ffn > 0 && ffn % 8 == 0, "ffn = %d must be a positive multiple of 8", ffn);
  QLLM_LAUNCH_CHECK(aligned16(gate_up) && aligned16(out), "gate_up and out must be 16-byte aligned");
  QLLM_LAUNCH_CHECK(d_rows != nullptr, "d_rows is null");
  silu_mul_kernel<<<rows_cap, kThreads, 0, stream>>>(gate_up, ffn, out, rows_cap, d_rows);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
