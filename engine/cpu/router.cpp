#include "engine/cpu/router.h"

#include "engine/common/error.h"
#include "engine/cpu/ops.h"

#include <algorithm>
#include <numeric>

namespace qllm::cpu {

void route_row(const float* logits, int E, int K, bool norm_topk_prob, int* ids, float* w) {
  QLLM_CHECK(K >= 1 && K <= E);
  std::vector<float> pr(logits, logits + E);
  softmax(pr.data(), E);
  std::vector<int> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  // Highest probability first; ties go to the lower expert index.
  std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int a, int b) {
    return pr[size_t(a)] > pr[size_t(b)] || (pr[size_t(a)] == pr[size_t(b)] && a < b);
  });
  float sum = 0;
  for (int j = 0; j < K; ++j) sum += pr[size_t(order[size_t(j)])];
  for (int j = 0; j < K; ++j) {
    const int e = order[size_t(j)];
    ids[j] = e;
    w[j] = norm_topk_prob ? pr[size_t(e)] / sum : pr[size_t(e)];
  }
}

void expert_lists(const int* topk_ids, const float* topk_w, int T, int K, int num_experts,
                  std::vector<std::vector<int>>& expert_tokens,
                  std::vector<std::vector<float>>& expert_weights) {
  expert_tokens.assign(size_t(num_experts), {});
  expert_weights.assign(size_t(num_experts), {});
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < K; ++j) {
      const int e = topk_ids[int64_t(t) * K + j];
      QLLM_CHECK(e >= 0 && e < num_experts);
      expert_tokens[size_t(e)].push_back(t);
      expert_weights[size_t(e)].push_back(topk_w[int64_t(t) * K + j]);
    }
}

Routing route(const float* logits, int T, int E, int K, bool norm_topk_prob) {
  Routing r;
  r.topk_ids.assign(size_t(T) * K, 0);
  r.topk_w.assign(size_t(T) * K, 0.0f);
  for (int t = 0; t < T; ++t)
    route_row(logits + int64_t(t) * E, E, K, norm_topk_prob, r.topk_ids.data() + int64_t(t) * K,
              r.topk_w.data() + int64_t(t) * K);
  expert_lists(r.topk_ids.data(), r.topk_w.data(), T, K, E, r.expert_tokens, r.expert_weights);
  return r;
}

Routing route_dense(int T) {
  Routing r;
  r.topk_ids.assign(size_t(T), 0);
  r.topk_w.assign(size_t(T), 1.0f);
  expert_lists(r.topk_ids.data(), r.topk_w.data(), T, 1, 1, r.expert_tokens, r.expert_weights);
  return r;
}

}  // namespace qllm::cpu
