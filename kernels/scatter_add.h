// Weighted scatter-add of one expert's output into the residual stream:
//
//   x[list_rows[offsets[expert] + r], :] += list_w[offsets[expert] + r] * y[r, :]
//   for r < counts[expert]
//
//   y          fp32 or bf16 [cap, hidden]   the expert's down GEMM output
//   list_rows, list_w, offsets, counts      kernels/expert_lists.h (device, per step)
//   x          fp32 [*, hidden]             residual stream
//
// A row appears at most once in an expert's list, so no two threads add into
// the same element and no atomics are needed; the experts of a layer run one
// after the other in ascending order (one graph each), so the sum into x has
// the CPU reference's order and is deterministic. The product and the sum are
// rounded separately (no fused multiply-add), as the CPU reference computes
// them. A count above cap is clamped to cap. hidden % 8 == 0, pointers
// 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

void scatter_add(const float* y, int hidden, const int32_t* list_rows, const float* list_w,
                 const int32_t* offsets, const int32_t* counts, int expert, float* x, int cap,
                 cudaStream_t stream);

void scatter_add(const __nv_bfloat16* y, int hidden, const int32_t* list_rows, const float* list_w,
                 const int32_t* offsets, const int32_t* counts, int expert, float* x, int cap,
                 cudaStream_t stream);

}  // namespace qllm::cuda
