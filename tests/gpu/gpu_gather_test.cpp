// kernels/gather: each expert's rows copied bit for bit from the rows its list
// names, rows past the expert's count (and past the buffer's capacity when
// the count is larger) keep their poison; one graph per expert serves steps
// with different routings.
#include "engine/cpu/router.h"
#include "kernels/gather.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <numeric>

using namespace qllm;
using namespace qllm::test;

namespace {

// Per-expert lists in the device layout (kernels/expert_lists.h), made on the
// host from a random routing of `rows` rows with K distinct experts each.
struct FlatLists {
  std::vector<int32_t> counts, offsets, rows;
  std::vector<float> w;
};

FlatLists random_lists(Rng& rng, int rows, int K, int E) {
  std::vector<int> ids;
  std::vector<int> perm(static_cast<size_t>(E));
  for (int t = 0; t < rows; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    for (int j = 0; j < K; ++j) {
      std::swap(perm[size_t(j)], perm[size_t(rng.integer(j, E - 1))]);
      ids.push_back(perm[size_t(j)]);
    }
  }
  const auto w = random_values(rng, ids.size());
  std::vector<std::vector<int>> lr;
  std::vector<std::vector<float>> lw;
  cpu::expert_lists(ids.data(), w.data(), rows, K, E, lr, lw);
  FlatLists f;
  f.offsets.push_back(0);
  for (int e = 0; e < E; ++e) {
    f.counts.push_back(int32_t(lr[size_t(e)].size()));
    f.offsets.push_back(f.offsets.back() + f.counts.back());
    f.rows.insert(f.rows.end(), lr[size_t(e)].begin(), lr[size_t(e)].end());
    f.w.insert(f.w.end(), lw[size_t(e)].begin(), lw[size_t(e)].end());
  }
  return f;
}

struct DeviceLists {
  DeviceBuffer<int32_t> counts, offsets, rows;
  DeviceBuffer<float> w;
  DeviceLists(int E, size_t entries) : counts(size_t(E)), offsets(size_t(E) + 1), rows(entries), w(entries) {}
  void upload(const FlatLists& f) {
    counts.upload(f.counts);
    offsets.upload(f.offsets);
    rows.upload(f.rows);
    w.upload(f.w);
  }
};

constexpr int kH = 512;

// What gather must leave in out [cap (+ guard), H] for expert e.
std::vector<uint16_t> expected(const FlatLists& f, int e, const std::vector<uint16_t>& x, size_t out_rows, int cap) {
  std::vector<uint16_t> out(out_rows * kH, poison_value<uint16_t>());
  const int n = std::min(f.counts[size_t(e)], cap);
  for (int r = 0; r < n; ++r) {
    const size_t src = size_t(f.rows[size_t(f.offsets[size_t(e)] + r)]);
    std::copy_n(x.begin() + std::ptrdiff_t(src * kH), kH, out.begin() + std::ptrdiff_t(size_t(r) * kH));
  }
  return out;
}

TEST(GpuGather, CopiesEachExpertsRowsAndNothingElse) {
  QLLM_REQUIRE_GPU();
  constexpr int T = 50, E = 8, K = 2, kCap = 32, kGuard = 3;
  Rng rng(1);
  const auto x = random_bf16(rng, size_t(T) * kH);
  const auto lists = random_lists(rng, T, K, E);
  DeviceBuffer<uint16_t> d_x(x.bits), d_out(size_t(kCap + kGuard) * kH);
  DeviceLists dl(E, size_t(T) * K);
  dl.upload(lists);
  for (int e = 0; e < E; ++e) {
    SCOPED_TRACE("expert " + std::to_string(e) + " with " + std::to_string(lists.counts[size_t(e)]) + " rows");
    d_out.poison();
    cuda::gather_rows(bf16_ptr(d_x), kH, dl.rows.get(), dl.offsets.get(), dl.counts.get(), e, bf16_ptr(d_out), kCap,
                      nullptr);
    EXPECT_TRUE(bits_equal(d_out.download(), expected(lists, e, x.bits, kCap + kGuard, kCap), "out"));
  }
}

TEST(GpuGather, ACountAboveTheCapacityIsClamped) {
  QLLM_REQUIRE_GPU();
  constexpr int T = 40, E = 2, K = 2, kCap = 16, kGuard = 4;  // both experts get all 40 rows
  Rng rng(2);
  const auto x = random_bf16(rng, size_t(T) * kH);
  const auto lists = random_lists(rng, T, K, E);
  DeviceBuffer<uint16_t> d_x(x.bits), d_out(size_t(kCap + kGuard) * kH);
  DeviceLists dl(E, size_t(T) * K);
  dl.upload(lists);
  d_out.poison();
  cuda::gather_rows(bf16_ptr(d_x), kH, dl.rows.get(), dl.offsets.get(), dl.counts.get(), 1, bf16_ptr(d_out), kCap,
                    nullptr);
  EXPECT_TRUE(bits_equal(d_out.download(), expected(lists, 1, x.bits, kCap + kGuard, kCap), "out"));
}

TEST(GpuGather, OneGraphPerExpertServesStepsWithDifferentRoutings) {
  QLLM_REQUIRE_GPU();
  constexpr int kTMax = 64, E = 8, K = 2, kCap = 64;
  Rng rng(3);
  DeviceBuffer<uint16_t> d_x(size_t(kTMax) * kH), d_out(size_t(kCap) * kH);
  DeviceLists dl(E, size_t(kTMax) * K);
  Stream stream;
  constexpr int kExpert = 5;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) {
    cuda::gather_rows(bf16_ptr(d_x), kH, dl.rows.get(), dl.offsets.get(), dl.counts.get(), kExpert,
                      bf16_ptr(d_out), kCap, s);
  });
  for (int T : {kTMax, 1, 9, 30}) {
    SCOPED_TRACE("replay with " + std::to_string(T) + " rows");
    const auto x = random_bf16(rng, size_t(kTMax) * kH);
    const auto lists = random_lists(rng, T, K, E);
    d_x.upload(x.bits);
    dl.upload(lists);
    d_out.poison();
    graph.replay(stream.get());
    EXPECT_TRUE(bits_equal(d_out.download(), expected(lists, kExpert, x.bits, kCap, kCap), "out"));
  }
}

}  // namespace
