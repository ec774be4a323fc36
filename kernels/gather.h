// Gathers the rows routed to one expert into a contiguous block, the input of
// the expert's gate/up GEMM:
//
//   out[r, :] = x[list_rows[offsets[expert] + r], :]   for r < counts[expert]
//
//   x          bf16 [*, hidden]            post-attention norm output
//   list_rows, offsets, counts             kernels/expert_lists.h (device, per step)
//   expert     the expert (fixed: each expert has its own graph)
//   out        bf16 [cap, hidden]          rows >= counts[expert] are not touched
//
// A count above cap is clamped to cap (the graph for a bucket of cap rows only
// runs when the count fits). hidden % 8 == 0, x and out 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

void gather_rows(const __nv_bfloat16* x, int hidden, const int32_t* list_rows, const int32_t* offsets,
                 const int32_t* counts, int expert, __nv_bfloat16* out, int cap, cudaStream_t stream);

}  // namespace qllm::cuda
