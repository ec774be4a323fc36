// RMSNorm, y = x / sqrt(mean(x^2) + eps) * w, fp32 arithmetic (engine/cpu/ops.h
// rms_norm). Three forms:
//
//   rms_norm               x fp32 [rows_cap, n] -> y bf16 [rows_cap, n]: the
//                          input and post-attention norms (GEMM inputs)
//   rms_norm_inplace       x bf16, each row's first n elements, row stride ld:
//                          OLMoE's full-width QK norm over q [T, q_dim] or
//                          k [T, kv_dim] (ld lets q and k sit in a fused QKV row)
//   rms_norm_heads_inplace x bf16, each row holds `heads` vectors of head_dim
//                          at stride ld, each normalised on its own with the
//                          one weight [head_dim]: Qwen3-MoE's per-head QK norm
//
// w is bf16 [n] (or [head_dim]). Only rows t < *d_rows (device, per step) are
// read or written; a row of the per-head form is a token, not a head. Widths
// and ld are multiples of 8 (of 2 for head_dim), pointers 16-byte aligned
// (4-byte for the per-head form).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

void rms_norm(const float* x, const __nv_bfloat16* w, __nv_bfloat16* y, int rows_cap, int n, float eps,
              const int32_t* d_rows, cudaStream_t stream);

void rms_norm_inplace(__nv_bfloat16* x, int64_t ld, const __nv_bfloat16* w, int rows_cap, int n,
                      float eps, const int32_t* d_rows, cudaStream_t stream);

void rms_norm_heads_inplace(__nv_bfloat16* x, int64_t ld, const __nv_bfloat16* w, int rows_cap,
                            int heads, int head_dim, float eps, const int32_t* d_rows,
                            cudaStream_t stream);

}  // namespace qllm::cuda
