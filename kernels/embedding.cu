// Embedding lookup (see embedding.h): one block per row, 8 elements (one
// 16-byte load, two 16-byte stores) per thread and step.
#include "kernels/embedding.h"

#include "kernels/cuda_check.h"
#include "kernels/kernel_utils.cuh"
#include "kernels/launch_check.h"

namespace qllm::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void embedding_kernel(const int32_t* __restrict__ ids, const __nv_bfloat16* __restrict__ table,
                                 int vocab, int hidden, float* __restrict__ x, int rows_cap,
                                 const int32_t* __restrict__ d_rows, int32_t* __restrict__ error) {
  const int row = int(blockIdx.x);
  if (row >= dev::active_rows(d_rows, rows_cap)) return;
  const int32_t id = ids[row];
  float* xr = x + int64_t(row) * hidden;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) *error = 1;
    const float zero[8] = {};
    for (int c = int(threadIdx.x) * 8; c < hidden; c += kThreads * 8) dev::store8(xr + c, zero);
    return;
  }
  const __nv_bfloat16* tr = table + int64_t(id) * hidden;
  for (int c = int(threadIdx.x) * 8; c < hidden; c += kThreads * 8) {
    float v[8];
    dev::load8(tr + c, v);
    dev::store8(xr + c, v);
  }
}

}  // namespace

void embedding(const int32_t* d_ids, const __nv_bfloat16* table, int vocab, int hidden, float* x,
               int rows_cap, const int32_t* d_rows, int32_t* d_error, cudaStream_t stream) {
  QLLM_LAUNCH_CHECK(rows_cap > 0, "rows_cap = %d", rows_cap);
  QLLM_LAUNCH_CHECK(vocab > 0, "vocab = %d", vocab);
  QLLM_LAUNCH_CHECK(hidden > 0 && hidden % 8 == 0, "hidden = %d must be a positive multiple of 8", hidden);
  QLLM_LAUNCH_CHECK(d_ids && d_rows && d_error, "null device pointer");
  QLLM_LAUNCH_CHECK(aligned16(table) && aligned16(x), "table and x must be 16-byte aligned");
  embedding_kernel<<<rows_cap, kThreads, 0, stream>>>(d_ids, table, vocab, hidden, x, rows_cap, d_rows,
                                                      d_error);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace qllm::cuda
