// engine/cpu/router: the routing that the reference model and the GPU router
// kernels follow (their end-to-end check is the Hugging Face golden test).
#include "engine/cpu/ops.h"
#include "engine/cpu/router.h"

#include <gtest/gtest.h>

#include <vector>

using namespace qllm;

namespace {

TEST(CpuRouter, HighestProbabilityFirstTiesToTheLowerIndex) {
  const std::vector<float> logits{1.0f, 3.0f, 0.5f, 3.0f, 2.0f, 3.0f};
  int ids[3];
  float w[3];
  cpu::route_row(logits.data(), 6, 3, false, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(ids[2], 5);
  std::vector<float> p = logits;
  cpu::softmax(p.data(), 6);
  EXPECT_EQ(w[0], p[1]);
  EXPECT_EQ(w[2], p[5]);

  cpu::route_row(logits.data(), 6, 2, false, ids, w);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
}

TEST(CpuRouter, RenormalisedWeightsSumToOne) {
  const std::vector<float> logits{0.1f, -2.0f, 1.5f, 0.7f, 0.2f, -0.3f, 2.5f, 0.0f};
  int ids[2];
  float w[2], plain[2];
  cpu::route_row(logits.data(), 8, 2, true, ids, w);
  EXPECT_EQ(ids[0], 6);
  EXPECT_EQ(ids[1], 2);
  EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6f);
  cpu::route_row(logits.data(), 8, 2, false, ids, plain);
  EXPECT_FLOAT_EQ(w[0], plain[0] / (plain[0] + plain[1]));
  EXPECT_LT(plain[0] + plain[1], 1.0f);
}

TEST(CpuRouter, ListsAreByExpertThenAscendingRow) {
  // 4 rows, top-2 over 4 experts.
  const std::vector<int> ids{2, 0, 0, 3, 2, 3, 1, 0};
  const std::vector<float> w{0.6f, 0.4f, 0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
  std::vector<std::vector<int>> rows;
  std::vector<std::vector<float>> ws;
  cpu::expert_lists(ids.data(), w.data(), 4, 2, 4, rows, ws);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(ws[0], (std::vector<float>{0.4f, 0.7f, 0.1f}));
  EXPECT_EQ(rows[1], (std::vector<int>{3}));
  EXPECT_EQ(rows[2], (std::vector<int>{0, 2}));
  EXPECT_EQ(ws[2], (std::vector<float>{0.6f, 0.5f}));
  EXPECT_EQ(rows[3], (std::vector<int>{1, 2}));
}

TEST(CpuRouter, RouteIsRouteRowPerRowPlusTheLists) {
  constexpr int T = 9, E = 8, K = 2;
  std::vector<float> logits(size_t(T) * E);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float((i * 37) % 23) * 0.25f - 2.0f;
  const auto r = cpu::route(logits.data(), T, E, K, true);
  ASSERT_EQ(r.expert_tokens.size(), size_t(E));
  for (int t = 0; t < T; ++t) {
    int ids[K];
    float w[K];
    cpu::route_row(logits.data() + t * E, E, K, true, ids, w);
    for (int j = 0; j < K; ++j) {
      EXPECT_EQ(r.topk_ids[size_t(t * K + j)], ids[j]);
      EXPECT_EQ(r.topk_w[size_t(t * K + j)], w[j]);
    }
  }
  size_t entries = 0;
  for (const auto& l : r.expert_tokens) entries += l.size();
  EXPECT_EQ(entries, size_t(T) * K);
}

TEST(CpuRouter, DenseLayerSendsEveryRowToUnitZero) {
  const auto r = cpu::route_dense(5);
  EXPECT_EQ(r.topk_ids, (std::vector<int>(5, 0)));
  EXPECT_EQ(r.topk_w, (std::vector<float>(5, 1.0f)));
  ASSERT_EQ(r.expert_tokens.size(), 1u);
  EXPECT_EQ(r.expert_tokens[0], (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(r.expert_weights[0], (std::vector<float>(5, 1.0f)));
}

}  // namespace
