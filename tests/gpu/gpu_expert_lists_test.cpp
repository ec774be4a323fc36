// kernels/expert_lists against engine/cpu/router.h expert_lists, bit for bit
// (counts, offsets, rows, weights): random routings over several chunks of
// 1024 entries, routings skewed onto a few experts (long runs of one expert
// inside a warp and across chunks), every supported expert count, dropped
// choices (-1) and out-of-range ids; list entries past the total keep their
// poison; the router and the lists captured together in one graph (as the
// attn unit ends) serve steps with different logits and counts.
#include "engine/cpu/router.h"
#include "kernels/expert_lists.h"
#include "kernels/router.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <algorithm>
#include <numeric>

using namespace qllm;
using namespace qllm::test;

namespace {

struct Lists {
  std::vector<int32_t> counts, offsets, rows;
  std::vector<float> w;
};

// The expected outputs for rows [0, n) of ids/w [cap, K]; ids < 0 are left
// out. List entries past the total: poison.
Lists expected(const std::vector<int32_t>& ids, const std::vector<float>& w, int K, int E, int n, int cap) {
  std::vector<int> kept_ids;
  std::vector<std::vector<int>> rows(static_cast<size_t>(E));
  std::vector<std::vector<float>> ws(static_cast<size_t>(E));
  for (int t = 0; t < n; ++t)
    for (int j = 0; j < K; ++j) {
      const int e = ids[size_t(t * K + j)];
      if (e < 0 || e >= E) continue;
      rows[size_t(e)].push_back(t);
      ws[size_t(e)].push_back(w[size_t(t * K + j)]);
    }
  // Without dropped choices this must be the CPU reference itself.
  bool all_kept = true;
  for (int i = 0; i < n * K; ++i) all_kept &= ids[size_t(i)] >= 0 && ids[size_t(i)] < E;
  if (all_kept) {
    std::vector<std::vector<int>> ref_rows;
    std::vector<std::vector<float>> ref_w;
    cpu::expert_lists(ids.data(), w.data(), n, K, E, ref_rows, ref_w);
    EXPECT_EQ(ref_rows, rows);
    EXPECT_EQ(ref_w, ws);
  }
  Lists l;
  l.offsets.push_back(0);
  for (int e = 0; e < E; ++e) {
    l.counts.push_back(int32_t(rows[size_t(e)].size()));
    l.offsets.push_back(l.offsets.back() + l.counts.back());
    l.rows.insert(l.rows.end(), rows[size_t(e)].begin(), rows[size_t(e)].end());
    l.w.insert(l.w.end(), ws[size_t(e)].begin(), ws[size_t(e)].end());
  }
  l.rows.resize(size_t(cap) * size_t(K), poison_value<int32_t>(0x7f));
  l.w.resize(size_t(cap) * size_t(K), poison_value<float>());
  return l;
}

struct ListsRun {
  int K, E, cap;
  DeviceBuffer<int32_t> d_ids, d_rows = device_int(0), d_counts, d_offsets, d_list_rows, d_error = device_int(0);
  DeviceBuffer<float> d_w, d_list_w;

  ListsRun(int K_, int E_, int cap_)
      : K(K_), E(E_), cap(cap_), d_ids(size_t(cap_) * size_t(K_)), d_counts(size_t(E_)),
        d_offsets(size_t(E_) + 1), d_list_rows(size_t(cap_) * size_t(K_)), d_w(size_t(cap_) * size_t(K_)),
        d_list_w(size_t(cap_) * size_t(K_)) {}

  void poison_outputs() {
    d_counts.poison(0x7f);
    d_offsets.poison(0x7f);
    d_list_rows.poison(0x7f);
    d_list_w.poison();
  }
  void launch(cudaStream_t s) {
    cuda::expert_lists(d_ids.get(), d_w.get(), K, E, cap, d_rows.get(), d_counts.get(), d_offsets.get(),
                       d_list_rows.get(), d_list_w.get(), d_error.get(), s);
  }
  void check(const Lists& want) const {
    EXPECT_TRUE(bits_equal(d_counts.download(), want.counts, "counts"));
    EXPECT_TRUE(bits_equal(d_offsets.download(), want.offsets, "offsets"));
    EXPECT_TRUE(bits_equal(d_list_rows.download(), want.rows, "list rows"));
    EXPECT_TRUE(bits_equal(d_list_w.download(), want.w, "list weights"));
  }
};

// Random top-k choices: K distinct experts per row, drawn from the first
// `spread` experts (a small spread skews the routing).
std::vector<int32_t> random_choices(Rng& rng, int rows, int K, int E, int spread) {
  std::vector<int32_t> ids;
  std::vector<int32_t> perm(static_cast<size_t>(spread));
  for (int t = 0; t < rows; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    for (int j = 0; j < K; ++j) {
      std::swap(perm[size_t(j)], perm[size_t(rng.integer(j, spread - 1))]);
      ids.push_back(perm[size_t(j)] % E);
    }
  }
  return ids;
}

void run_case(int K, int E, int cap, int n, int spread, uint64_t seed) {
  SCOPED_TRACE("K " + std::to_string(K) + " E " + std::to_string(E) + " rows " + std::to_string(n) + " of " +
               std::to_string(cap) + " spread " + std::to_string(spread));
  Rng rng(seed);
  const auto ids = random_choices(rng, cap, K, E, spread);
  std::vector<float> w = random_values(rng, size_t(cap) * size_t(K));
  ListsRun r(K, E, cap);
  r.d_ids.upload(ids);
  r.d_w.upload(w);
  write_int(r.d_rows, n);
  r.poison_outputs();
  r.launch(nullptr);
  r.check(expected(ids, w, K, E, n, cap));
  EXPECT_EQ(read_int(r.d_error), 0);
  // A second launch gives the same bytes.
  const auto first = r.d_list_rows.download();
  r.launch(nullptr);
  EXPECT_TRUE(bits_equal(r.d_list_rows.download(), first, "second launch"));
}

TEST(GpuExpertLists, MatchCpuListsBitForBit) {
  QLLM_REQUIRE_GPU();
  run_case(8, 64, 1000, 997, 64, 1);    // OLMoE: 7976 entries, 8 chunks
  run_case(8, 128, 1024, 1024, 128, 2); // Qwen3: every entry of the capacity
  run_case(2, 8, 300, 256, 8, 3);       // Mixtral
  run_case(2, 4, 50, 50, 4, 4);         // tiny Mixtral
  run_case(8, 256, 200, 131, 256, 5);   // the most experts supported
  run_case(1, 1, 40, 33, 1, 6);         // one expert: a dense layer's shape
  run_case(4, 64, 600, 599, 64, 7);     // a count whose entries end mid-warp
  run_case(8, 64, 64, 0, 64, 8);        // nothing routed: zero counts and offsets
}

TEST(GpuExpertLists, SkewedRoutingKeepsRowsAscending) {
  QLLM_REQUIRE_GPU();
  run_case(2, 8, 2000, 2000, 2, 11);    // two experts take everything: 2000-long runs
  run_case(8, 64, 700, 650, 9, 12);     // 9 of 64 experts used
  run_case(4, 128, 900, 900, 5, 13);
}

TEST(GpuExpertLists, DroppedAndOutOfRangeIdsAreLeftOut) {
  QLLM_REQUIRE_GPU();
  constexpr int K = 4, E = 16, kCap = 300, kRows = 290;
  Rng rng(21);
  auto ids = random_choices(rng, kCap, K, E, E);
  for (int i = 0; i < kCap * K; i += 7) ids[size_t(i)] = -1;  // dropped choices
  const auto w = random_values(rng, size_t(kCap) * K);
  ListsRun r(K, E, kCap);
  r.d_ids.upload(ids);
  r.d_w.upload(w);
  write_int(r.d_rows, kRows);
  r.poison_outputs();
  r.launch(nullptr);
  r.check(expected(ids, w, K, E, kRows, kCap));
  EXPECT_EQ(read_int(r.d_error), 0) << "a dropped choice is not an error";

  ids[size_t(5 * K + 1)] = E;        // out of range, active row: flagged
  ids[size_t(kRows * K + 2)] = 999;  // out of range past the count: not read
  r.d_ids.upload(ids);
  r.poison_outputs();
  r.launch(nullptr);
  r.check(expected(ids, w, K, E, kRows, kCap));
  EXPECT_EQ(read_int(r.d_error), 1);
}

TEST(GpuExpertLists, RouterAndListsInOneGraphServeEveryStep) {
  QLLM_REQUIRE_GPU();
  constexpr int E = 64, K = 8, kCap = 256;
  DeviceBuffer<float> d_logits(size_t(kCap) * E);
  ListsRun r(K, E, kCap);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) {
    cuda::router_topk(d_logits.get(), E, K, false, r.d_ids.get(), r.d_w.get(), kCap, r.d_rows.get(), s);
    r.launch(s);
  });
  EXPECT_EQ(graph.nodes(), 2u);
  Rng rng(5);
  for (int n : {kCap, 3, 0, 200, 1}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    const auto logits = random_values(rng, size_t(kCap) * E, 3.0f);
    d_logits.upload(logits);
    write_int(r.d_rows, n);
    r.d_ids.poison(0x7f);
    r.d_w.poison();
    r.poison_outputs();
    graph.replay(stream.get());
    // The lists of whatever the router chose (gpu_router_test compares the
    // router with the CPU).
    const auto ids = r.d_ids.download();
    const auto w = r.d_w.download();
    r.check(expected(ids, w, K, E, n, kCap));
    EXPECT_EQ(read_int(r.d_error), 0);
  }
}

}  // namespace
