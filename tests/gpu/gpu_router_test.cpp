// kernels/router against engine/cpu/router.h route_row:
//   * the chosen experts compared as sets, per row; a difference is accepted
//     only between experts whose CPU probabilities tie with the k-th one to
//     1e-6 (the GPU's fp32 softmax may order a near-tie the other way);
//   * exact ties (equal logits give bit-equal probabilities on both sides)
//     must go to the lower expert index, with no tolerance;
//   * weights per chosen expert to fp32 tolerance, renormalised or not as the
//     architecture asks; no expert chosen twice;
//   * every expert count the kernel has a path for (1, 2, 4, 8 values per lane);
//   * rows past the step's count keep their poison; one captured graph serves
//     steps with different logits and counts.
#include "engine/cpu/ops.h"
#include "engine/cpu/router.h"
#include "kernels/router.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <algorithm>
#include <map>
#include <set>

using namespace qllm;
using namespace qllm::test;

namespace {

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

// Compares the GPU's rows [0, n) with the CPU reference. `exact_rows` must
// match as sets with no near-tie allowance.
void compare(const std::vector<float>& logits, int E, int K, bool norm, int n, const Routed& got,
             const std::set<int>& exact_rows = {}) {
  for (int t = 0; t < n; ++t) {
    SCOPED_TRACE("row " + std::to_string(t));
    const float* lr = logits.data() + size_t(t) * size_t(E);
    std::vector<int> want_ids(static_cast<size_t>(K));
    std::vector<float> want_w(static_cast<size_t>(K));
    cpu::route_row(lr, E, K, norm, want_ids.data(), want_w.data());
    std::vector<float> prob(lr, lr + E);
    cpu::softmax(prob.data(), E);
    const float kth = prob[size_t(want_ids[size_t(K - 1)])];

    std::map<int, float> gpu;  // expert -> weight
    for (int j = 0; j < K; ++j) {
      const int e = got.ids[size_t(t) * size_t(K) + size_t(j)];
      ASSERT_TRUE(e >= 0 && e < E) << "expert id " << e;
      ASSERT_TRUE(gpu.emplace(e, got.w[size_t(t) * size_t(K) + size_t(j)]).second) << "expert " << e << " twice";
    }
    std::map<int, float> cpu_set;
    for (int j = 0; j < K; ++j) cpu_set.emplace(want_ids[size_t(j)], want_w[size_t(j)]);
    for (const auto& [e, w_gpu] : gpu)
      if (!cpu_set.count(e)) {
        // Only a near-tie with the k-th probability may be swapped, and only
        // against a CPU choice that is itself at the boundary.
        const bool tie = std::fabs(prob[size_t(e)] - kth) <= 1e-6f * kth;
        EXPECT_TRUE(tie && !exact_rows.count(t)) << "GPU chose expert " << e << " (p " << prob[size_t(e)]
                                                 << "), the CPU did not (k-th p " << kth << ")";
      }
    for (const auto& [e, w_cpu] : cpu_set)
      if (!gpu.count(e)) {
        EXPECT_TRUE(std::fabs(prob[size_t(e)] - kth) <= 1e-6f * kth && !exact_rows.count(t))
            << "the CPU chose expert " << e << " (p " << prob[size_t(e)] << "), the GPU did not";
      }
    // A swapped near-tie changes the renormalising sum by the tie's
    // difference only: every weight is still within 1e-5 of the CPU's.
    for (const auto& [e, w] : gpu) {
      const float want = cpu_set.count(e) ? cpu_set[e] : (norm ? w : prob[size_t(e)]);
      EXPECT_NEAR(w, want, 1e-5 * std::fabs(want) + 1e-7) << "weight of expert " << e;
    }
  }
}

struct RouterRun {
  int E, K, cap;
  bool norm;
  DeviceBuffer<float> d_logits;
  DeviceBuffer<int32_t> d_ids, d_rows = device_int(0);
  DeviceBuffer<float> d_w;

  RouterRun(int E_, int K_, int cap_, bool norm_)
      : E(E_), K(K_), cap(cap_), norm(norm_), d_logits(size_t(cap_) * size_t(E_)),
        d_ids(size_t(cap_) * size_t(K_)), d_w(size_t(cap_) * size_t(K_)) {}

  void launch(cudaStream_t s) {
    cuda::router_topk(d_logits.get(), E, K, norm, d_ids.get(), d_w.get(), cap, d_rows.get(), s);
  }
  void prepare(const std::vector<float>& logits, int n) {
    d_logits.upload(logits);
    write_int(d_rows, n);
    d_ids.poison(0x7f);
    d_w.poison();
  }
  Routed result() const { return {d_ids.download(), d_w.download()}; }
  // Rows [n, cap) of both outputs still poison.
  void expect_untouched(int n) const {
    const size_t from = size_t(n) * size_t(K), all = size_t(cap) * size_t(K);
    EXPECT_TRUE(bits_equal(slice(d_ids.download(), from, all),
                           std::vector<int32_t>(all - from, poison_value<int32_t>(0x7f)), "ids past the count"));
    EXPECT_TRUE(bits_equal(slice(d_w.download(), from, all), std::vector<float>(all - from, poison_value<float>()),
                           "weights past the count"));
  }
};

TEST(GpuRouter, TopKMatchesCpuForEveryExpertCount) {
  QLLM_REQUIRE_GPU();
  struct Case {
    int E, K;
  };
  for (const Case c : {Case{4, 2}, Case{8, 2}, Case{32, 4}, Case{60, 4}, Case{64, 8}, Case{100, 6},
                       Case{128, 8}, Case{256, 8}, Case{256, 32}, Case{8, 8}, Case{5, 1}})
    for (bool norm : {true, false}) {
      SCOPED_TRACE("E " + std::to_string(c.E) + " K " + std::to_string(c.K) + (norm ? " renormalised" : ""));
      constexpr int kCap = 77, kRows = 70;
      Rng rng(uint64_t(c.E * 100 + c.K) + (norm ? 1u : 0u));
      const auto logits = random_values(rng, size_t(kCap) * size_t(c.E), 4.0f);
      RouterRun r(c.E, c.K, kCap, norm);
      r.prepare(logits, kRows);
      r.launch(nullptr);
      compare(logits, c.E, c.K, norm, kRows, r.result());
      r.expect_untouched(kRows);
    }
}

TEST(GpuRouter, ExactTiesGoToTheLowerExpert) {
  QLLM_REQUIRE_GPU();
  constexpr int E = 64, K = 4, kRows = 6;
  Rng rng(3);
  auto logits = random_values(rng, size_t(kRows) * E, 1.0f);
  auto row = [&](int t) { return logits.data() + size_t(t) * E; };
  // 0: all equal: experts 0..3.
  std::fill(row(0), row(0) + E, 0.25f);
  // 1: the top value at 50, 7, 33, 12, 40 (lanes and register slots differ):
  //    7, 12, 33, 40.
  for (int e : {50, 7, 33, 12, 40}) row(1)[e] = 5.0f;
  // 2: a clear top 2 (9, 60), then a four-way tie for the last two places at
  //    63, 31, 32, 1: 1 and 31.
  row(2)[9] = 6.0f, row(2)[60] = 5.5f;
  for (int e : {63, 31, 32, 1}) row(2)[e] = 3.0f;
  // 3: the tie above the boundary, a unique k-th: 20 and 52 tie for first.
  row(3)[52] = 4.0f, row(3)[20] = 4.0f, row(3)[44] = 3.5f, row(3)[0] = 3.25f;
  // 4: ties that straddle lanes 31/32 and the last slot: 63, 31, 32, 0 tie
  //    below a unique top (17): 0, 31, 32.
  row(4)[17] = 7.0f;
  for (int e : {63, 31, 32, 0}) row(4)[e] = 2.0f;
  // 5: random logits with a duplicated maximum.
  {
    const auto m = *std::max_element(row(5), row(5) + E);
    row(5)[E - 1] = m, row(5)[E / 2] = m;
  }
  for (bool norm : {true, false}) {
    SCOPED_TRACE(norm ? "renormalised" : "plain");
    RouterRun r(E, K, kRows, norm);
    r.prepare(logits, kRows);
    r.launch(nullptr);
    const auto got = r.result();
    compare(logits, E, K, norm, kRows, got, {0, 1, 2, 3, 4, 5});
    const auto set_of = [&](int t) {
      return std::set<int>(got.ids.begin() + t * K, got.ids.begin() + (t + 1) * K);
    };
    EXPECT_EQ(set_of(0), (std::set<int>{0, 1, 2, 3}));
    EXPECT_EQ(set_of(1), (std::set<int>{7, 12, 33, 40}));
    EXPECT_EQ(set_of(2), (std::set<int>{9, 60, 1, 31}));
    EXPECT_EQ(set_of(3), (std::set<int>{20, 52, 44, 0}));
    EXPECT_EQ(set_of(4), (std::set<int>{17, 0, 31, 32}));
    if (norm) {
      for (int j = 0; j < K; ++j) EXPECT_FLOAT_EQ(got.w[size_t(j)], 0.25f) << "all-equal row, choice " << j;
    }
  }
}

TEST(GpuRouter, OneGraphServesStepsWithDifferentLogitsAndCounts) {
  QLLM_REQUIRE_GPU();
  constexpr int E = 128, K = 8, kCap = 40;
  RouterRun r(E, K, kCap, true);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) { r.launch(s); });
  Rng rng(99);
  for (int n : {kCap, 1, 0, 33, 5}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    const auto logits = random_values(rng, size_t(kCap) * E, 3.0f);
    r.prepare(logits, n);
    graph.replay(stream.get());
    compare(logits, E, K, true, n, r.result());
    r.expect_untouched(n);
  }
}

}  // namespace
