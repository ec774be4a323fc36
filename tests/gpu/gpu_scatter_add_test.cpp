// kernels/scatter_add: the experts of a layer added into the residual stream
// one after the other, compared bit for bit with the CPU reference's
// arithmetic (x + w * y, product and sum rounded separately, experts in
// ascending order), for fp32 and bf16 expert outputs; rows no expert took,
// and expert rows past the capacity, are unchanged; one graph holding every
// expert's scatter serves steps with different routings.
#include "engine/cpu/router.h"
#include "kernels/scatter_add.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <numeric>

using namespace qllm;
using namespace qllm::test;

namespace {

struct Routing {
  std::vector<std::vector<int>> rows;
  std::vector<std::vector<float>> w;
  std::vector<int32_t> counts, offsets, flat_rows;
  std::vector<float> flat_w;
};

Routing random_routing(Rng& rng, int T, int K, int E) {
  std::vector<int> ids, perm(static_cast<size_t>(E));
  for (int t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    for (int j = 0; j < K; ++j) {
      std::swap(perm[size_t(j)], perm[size_t(rng.integer(j, E - 1))]);
      ids.push_back(perm[size_t(j)]);
    }
  }
  std::vector<float> w(ids.size());
  for (auto& v : w) v = rng.uniform(0.05f, 1.0f);
  Routing r;
  cpu::expert_lists(ids.data(), w.data(), T, K, E, r.rows, r.w);
  r.offsets.push_back(0);
  for (int e = 0; e < E; ++e) {
    r.counts.push_back(int32_t(r.rows[size_t(e)].size()));
    r.offsets.push_back(r.offsets.back() + r.counts.back());
    r.flat_rows.insert(r.flat_rows.end(), r.rows[size_t(e)].begin(), r.rows[size_t(e)].end());
    r.flat_w.insert(r.flat_w.end(), r.w[size_t(e)].begin(), r.w[size_t(e)].end());
  }
  return r;
}

// x after every expert e adds w * y_e[r] into its rows r < min(count, cap), in
// ascending expert order, as ReferenceModel::expert_unit does.
std::vector<float> cpu_scatter(std::vector<float> x, const Routing& r, const std::vector<std::vector<float>>& y,
                               int H, int cap) {
  for (size_t e = 0; e < r.rows.size(); ++e)
    for (size_t i = 0; i < r.rows[e].size() && i < size_t(cap); ++i) {
      float* xr = x.data() + size_t(r.rows[e][i]) * size_t(H);
      const float w = r.w[e][i];
      for (size_t c = 0; c < size_t(H); ++c) {
        const float prod = w * y[e][i * size_t(H) + c];
        xr[c] = xr[c] + prod;
      }
    }
  return x;
}

struct ScatterRun {
  int T, K, E, H, cap;
  Rng rng;
  DeviceBuffer<float> d_x;
  DeviceBuffer<int32_t> d_counts, d_offsets, d_rows;
  DeviceBuffer<float> d_w;
  std::vector<DeviceBuffer<float>> d_y32;
  std::vector<DeviceBuffer<uint16_t>> d_y16;

  ScatterRun(int T_, int K_, int E_, int H_, int cap_, uint64_t seed)
      : T(T_), K(K_), E(E_), H(H_), cap(cap_), rng(seed), d_x(size_t(T_) * size_t(H_)), d_counts(size_t(E_)),
        d_offsets(size_t(E_) + 1), d_rows(size_t(T_) * size_t(K_)), d_w(size_t(T_) * size_t(K_)) {
    for (int e = 0; e < E; ++e) {
      d_y32.emplace_back(size_t(cap) * size_t(H));
      d_y16.emplace_back(size_t(cap) * size_t(H));
    }
  }
  void launch(bool bf16_y, cudaStream_t s) {
    for (int e = 0; e < E; ++e) {
      if (bf16_y)
        cuda::scatter_add(bf16_ptr(d_y16[size_t(e)]), H, d_rows.get(), d_w.get(), d_offsets.get(), d_counts.get(), e,
                          d_x.get(), cap, s);
      else
        cuda::scatter_add(d_y32[size_t(e)].get(), H, d_rows.get(), d_w.get(), d_offsets.get(), d_counts.get(), e,
                          d_x.get(), cap, s);
    }
  }
  // New x, routing over `rows` rows and expert outputs; returns the expected x.
  std::vector<float> prepare(int rows, bool bf16_y) {
    const auto x = random_values(rng, size_t(T) * size_t(H), 4.0f);
    const auto r = random_routing(rng, rows, K, E);
    std::vector<std::vector<float>> y;
    for (int e = 0; e < E; ++e) {
      auto v = bf16_y ? random_bf16(rng, size_t(cap) * size_t(H), 2.0f).f32 : random_values(rng, size_t(cap) * size_t(H), 2.0f);
      if (bf16_y)
        d_y16[size_t(e)].upload(to_bf16(v));
      else
        d_y32[size_t(e)].upload(v);
      y.push_back(std::move(v));
    }
    d_x.upload(x);
    d_counts.upload(r.counts);
    d_offsets.upload(r.offsets);
    d_rows.poison(0x7f);  // entries past the total: never read
    d_rows.upload(r.flat_rows);
    d_w.poison();
    d_w.upload(r.flat_w);
    return cpu_scatter(x, r, y, H, cap);
  }
};

TEST(GpuScatterAdd, AddsEveryExpertInOrderBitForBit) {
  QLLM_REQUIRE_GPU();
  struct Case {
    int T, K, E, H, cap;
  };
  for (const Case c : {Case{40, 2, 8, 64, 40}, Case{30, 8, 64, 2048, 32}, Case{12, 2, 8, 4096, 12},
                       Case{50, 2, 4, 256, 8}})  // the last: counts above the capacity
    for (bool bf16_y : {false, true}) {
      SCOPED_TRACE("T " + std::to_string(c.T) + " E " + std::to_string(c.E) + " H " + std::to_string(c.H) +
                   " cap " + std::to_string(c.cap) + (bf16_y ? " bf16 y" : " fp32 y"));
      ScatterRun run(c.T, c.K, c.E, c.H, c.cap, uint64_t(c.T * 1000 + c.H));
      const int rows = c.T - 3;  // the last rows go to no expert
      const auto want = run.prepare(rows, bf16_y);
      run.launch(bf16_y, nullptr);
      EXPECT_TRUE(bits_equal(run.d_x.download(), want, "x"));
    }
}

TEST(GpuScatterAdd, OneGraphOfAllExpertsServesStepsWithDifferentRoutings) {
  QLLM_REQUIRE_GPU();
  ScatterRun run(48, 2, 8, 512, 48, 77);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) { run.launch(false, s); });
  EXPECT_EQ(graph.nodes(), 8u);
  for (int rows : {48, 1, 0, 25}) {
    SCOPED_TRACE("replay with " + std::to_string(rows) + " routed rows");
    const auto want = run.prepare(rows, false);
    graph.replay(stream.get());
    EXPECT_TRUE(bits_equal(run.d_x.download(), want, "x"));
  }
}

}  // namespace
