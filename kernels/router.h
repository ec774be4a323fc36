// MoE routing of each row (engine/cpu/router.h route_row): softmax over the E
// router logits, the K most probable experts (highest first; equal
// probabilities go to the lower expert index), their probabilities as weights,
// divided by the sum of the K when norm_topk_prob (ModelDesc::norm_topk_prob:
// Mixtral always, Qwen3-MoE per config, OLMoE never).
//
//   logits    fp32 [rows_cap, num_experts]   router GEMM output
//   topk_ids  int32 [rows_cap, top_k]        written for rows < *d_rows
//   topk_w    fp32 [rows_cap, top_k]         written for rows < *d_rows
//   d_rows    int32 [1] rows this step (device)
//
// num_experts <= 256, 1 <= top_k <= min(32, num_experts). Rows >= *d_rows are
// not touched.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

inline constexpr int kRouterMaxExperts = 256;
inline constexpr int kRouterMaxTopK = 32;

void router_topk(const float* logits, int num_experts, int top_k, bool norm_topk_prob, int32_t* topk_ids,
                 float* topk_w, int rows_cap, const int32_t* d_rows, cudaStream_t stream);

}  // namespace qllm::cuda
