// CPU reference routing: router logits -> top-k experts per token -> per-expert
// token lists. The specification of kernels/router.cu and
// kernels/expert_lists.cu.
//
//   probabilities  softmax over the E logits of a row (ops.h softmax)
//   top-k          the K highest probabilities, highest first; equal
//                  probabilities go to the lower expert index
//   weights        the K probabilities, divided by their sum when
//                  norm_topk_prob (Mixtral always, Qwen3-MoE per config),
//                  as they are otherwise (OLMoE)
//   lists          for each expert, the rows routed to it in ascending row
//                  order, with the weight each row gave it
#pragma once

#include <cstdint>
#include <vector>

namespace qllm::cpu {

struct Routing {
  std::vector<int> topk_ids;    // [T, K]
  std::vector<float> topk_w;    // [T, K]
  std::vector<std::vector<int>> expert_tokens;     // per expert: token rows, ascending
  std::vector<std::vector<float>> expert_weights;  // per expert: routing weight per row
};

// One row: logits [E] -> ids [K], weights [K]. K <= E.
void route_row(const float* logits, int E, int K, bool norm_topk_prob, int* ids, float* w);

// Per-expert lists from top-k ids and weights [T, K]: rows ascending within an
// expert (the order in which ids lists them). Returns `num_experts` lists.
void expert_lists(const int* topk_ids, const float* topk_w, int T, int K, int num_experts,
                  std::vector<std::vector<int>>& expert_tokens,
                  std::vector<std::vector<float>>& expert_weights);

// A MoE layer: logits [T, E] (left unchanged) -> routing over E experts.
Routing route(const float* logits, int T, int E, int K, bool norm_topk_prob);

// A dense layer: every row goes to unit 0 with weight 1 (ids [T, 1] all 0).
Routing route_dense(int T);

}  // namespace qllm::cpu
