// SwiGLU activation: out[r, i] = silu(gate[r, i]) * up[r, i], silu(v) = v / (1 + e^-v)
// (engine/cpu/ops.h silu), for rows r < *d_rows.
//
//   gate_up  bf16 [rows_cap, 2 * ffn]: gate in columns [0, ffn), up in
//            [ffn, 2 * ffn): the output of one GEMM with the gate and up
//            weights stacked as [2 * ffn, hidden] (a fused checkpoint's
//            gate_up_proj of one expert; per-expert checkpoints stack w1 over w3)
//   out      bf16 [rows_cap, ffn]       the down GEMM's input
//   d_rows   int32 [1] (device): the pass's row count, or counts + expert
//
// Rows >= *d_rows are not touched. ffn % 8 == 0, pointers 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

void silu_mul(const __nv_bfloat16* gate_up, int ffn, __nv_bfloat16* out, int rows_cap, const int32_t* d_rows,
              cudaStream_t stream);

}  // namespace qllm::cuda
