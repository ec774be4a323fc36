// Clamp in place to [-limit, limit]: OLMoE's clip_qkv on the q, k and v
// projections (after the QK norm, before RoPE, as engine/cpu/reference_model.cpp).
//
//   x       bf16, rows of row stride ld; the first `width` elements of each row
//           are clamped (a fused QKV row: width = q_dim + 2 * kv_dim)
//   d_rows  int32 [1], rows this step (device); rows >= *d_rows are not touched
//
// width and ld are multiples of 8, x 16-byte aligned, limit > 0 (a model
// without clip_qkv does not launch this).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

void clip_inplace(__nv_bfloat16* x, int64_t ld, int width, float limit, int rows_cap, const int32_t* d_rows,
                  cudaStream_t stream);

}  // namespace qllm::cuda
