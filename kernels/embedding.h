// Token embedding: x[t, :] = float(table[ids[t], :]) for the rows t < *d_rows.
//
//   d_ids    int32 [rows_cap]           token ids (device, per step)
//   table    bf16  [vocab, hidden]      embedding weights
//   x        fp32  [rows_cap, hidden]   residual stream, written for t < *d_rows
//   d_rows   int32 [1]                  rows this step (device, per step)
//   d_error  int32 [1]                  set to 1 when an id is outside [0, vocab);
//                                       that row of x is written as zeros.
//                                       Never cleared here.
//
// Rows >= *d_rows are not touched. hidden % 8 == 0; table and x 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

void embedding(const int32_t* d_ids, const __nv_bfloat16* table, int vocab, int hidden, float* x,
               int rows_cap, const int32_t* d_rows, int32_t* d_error, cudaStream_t stream);

}  // namespace qllm::cuda
