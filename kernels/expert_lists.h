// Per-expert token lists from the router's choices (engine/cpu/router.h
// expert_lists): for each expert, the rows routed to it in ascending row
// order with the weight each row gave it, all experts back to back in
// ascending expert order.
//
//   topk_ids   int32 [rows_cap, top_k]   router output (device, per step)
//   topk_w     fp32  [rows_cap, top_k]
//   d_rows     int32 [1] rows this step (device)
//   counts     int32 [num_experts]       rows routed to each expert
//   offsets    int32 [num_experts + 1]   exclusive prefix sum of counts;
//                                        offsets[E] = entries in all
//   list_rows  int32 [rows_cap * top_k]  expert e's rows at
//                                        [offsets[e], offsets[e] + counts[e])
//   list_w     fp32  [rows_cap * top_k]  the matching weights
//   d_error    int32 [1] or null: set to 1 when an id is >= num_experts
//
// A negative id (a dropped choice) and an id >= num_experts are left out of
// the lists. counts and offsets are written in full every launch; list
// entries past offsets[E] are not touched. The result is deterministic (no
// order depends on timing): one block of 1024 threads ranks the entries in
// index order, 1024 at a time, so its time grows with rows * top_k; meant for
// up to a few thousand entries a step. num_experts <= 256.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qllm::cuda {

inline constexpr int kExpertListsMaxExperts = 256;

void expert_lists(const int32_t* topk_ids, const float* topk_w, int top_k, int num_experts, int rows_cap,
                  const int32_t* d_rows, int32_t* counts, int32_t* offsets, int32_t* list_rows, float* list_w,
                  int32_t* d_error, cudaStream_t stream);

}  // namespace qllm::cuda
