// kernels/embedding against the table rows it must copy (bf16 -> fp32 is
// exact, so the comparison is bit for bit): rows past the step's count keep
// their poison, out-of-range ids give zeros and raise the error flag, and one
// captured graph serves steps with different ids and counts.
#include "kernels/embedding.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

using namespace qllm;
using namespace qllm::test;

namespace {

constexpr int kVocab = 1000, kHidden = 256, kCap = 37;

struct Fixture {
  Rng rng{7};
  Bf16Values table = random_bf16(rng, size_t(kVocab) * kHidden);
  DeviceBuffer<uint16_t> d_table{table.bits};
  DeviceBuffer<int32_t> d_ids{size_t(kCap)};
  DeviceBuffer<float> d_x{size_t(kCap) * kHidden};
  DeviceBuffer<int32_t> d_rows = device_int(0);
  DeviceBuffer<int32_t> d_error = device_int(0);

  std::vector<int32_t> random_ids() {
    std::vector<int32_t> ids(kCap);
    for (auto& id : ids) id = int32_t(rng.integer(0, kVocab - 1));
    return ids;
  }
  void launch(cudaStream_t s) {
    cuda::embedding(d_ids.get(), bf16_ptr(d_table), kVocab, kHidden, d_x.get(), kCap, d_rows.get(),
                    d_error.get(), s);
  }
  // Rows < n: the table row of ids[t] (zeros for an id outside the vocabulary);
  // the rest: poison.
  std::vector<float> expected(const std::vector<int32_t>& ids, int n) const {
    std::vector<float> x(size_t(kCap) * kHidden, poison_value<float>());
    for (int t = 0; t < n; ++t)
      for (int c = 0; c < kHidden; ++c) {
        const int32_t id = ids[size_t(t)];
        x[size_t(t) * kHidden + size_t(c)] =
            id >= 0 && id < kVocab ? table.f32[size_t(id) * kHidden + size_t(c)] : 0.0f;
      }
    return x;
  }
};

TEST(GpuEmbedding, CopiesTableRowsAndLeavesRowsPastTheCount) {
  QLLM_REQUIRE_GPU();
  Fixture f;
  const auto ids = f.random_ids();
  f.d_ids.upload(ids);
  for (int n : {kCap, 29, 1, 0}) {
    write_int(f.d_rows, n);
    f.d_x.poison();
    f.launch(nullptr);
    EXPECT_TRUE(bits_equal(f.d_x.download(), f.expected(ids, n), "x with " + std::to_string(n) + " rows"));
    EXPECT_EQ(read_int(f.d_error), 0);
  }
}

TEST(GpuEmbedding, OutOfRangeIdsGiveZerosAndSetTheFlag) {
  QLLM_REQUIRE_GPU();
  Fixture f;
  auto ids = f.random_ids();
  ids[3] = -1;
  ids[10] = kVocab;
  ids[20] = 0x7fffffff;
  ids[kCap - 1] = -5;  // past the count below: neither read nor flagged
  f.d_ids.upload(ids);
  write_int(f.d_rows, kCap - 1);
  f.d_x.poison();
  f.launch(nullptr);
  EXPECT_TRUE(bits_equal(f.d_x.download(), f.expected(ids, kCap - 1), "x"));
  EXPECT_EQ(read_int(f.d_error), 1);

  // A bad id past the count is not looked at.
  ids[3] = 1, ids[10] = 2, ids[20] = 3;
  f.d_ids.upload(ids);
  write_int(f.d_error, 0);
  f.d_x.poison();
  f.launch(nullptr);
  EXPECT_TRUE(bits_equal(f.d_x.download(), f.expected(ids, kCap - 1), "x, bad id past the count"));
  EXPECT_EQ(read_int(f.d_error), 0);
}

TEST(GpuEmbedding, OneGraphServesStepsWithDifferentIdsAndCounts) {
  QLLM_REQUIRE_GPU();
  Fixture f;
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) { f.launch(s); });
  EXPECT_EQ(graph.nodes(), 1u);
  for (int n : {kCap, 1, 16, 0, 23}) {
    const auto ids = f.random_ids();
    f.d_ids.upload(ids);
    write_int(f.d_rows, n);
    f.d_x.poison();
    graph.replay(stream.get());
    EXPECT_TRUE(bits_equal(f.d_x.download(), f.expected(ids, n), "replay with " + std::to_string(n) + " rows"));
  }
  EXPECT_EQ(read_int(f.d_error), 0);
}

}  // namespace
