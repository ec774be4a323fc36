// kernels/clip against std::clamp on the same bf16 values (exact: a clamped
// bf16 value is the limit rounded to bf16, an unclamped one is itself), on
// rows of a wider buffer: columns past the width and rows past the step's
// count stay as they were; one captured graph serves different counts.
#include "kernels/clip.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <algorithm>

using namespace qllm;
using namespace qllm::test;

namespace {

// What clip must leave in x [cap, ld] after clamping the first `width` columns
// of rows < n.
std::vector<uint16_t> expected(const std::vector<uint16_t>& x, size_t ld, size_t width, int n, float limit) {
  std::vector<uint16_t> out = x;
  for (size_t r = 0; r < size_t(n); ++r)
    for (size_t c = 0; c < width; ++c)
      out[r * ld + c] = f32_to_bf16(std::clamp(bf16_to_f32(x[r * ld + c]), -limit, limit));
  return out;
}

TEST(GpuClip, ClampsTheWidthOfActiveRowsOnly) {
  QLLM_REQUIRE_GPU();
  struct Case {
    int cap, width, ld, n;
    float limit;
  };
  for (const Case& c : {Case{13, 128, 136, 11, 1.5f}, Case{4, 6144, 6144, 4, 8.0f}, Case{7, 64, 64, 0, 0.3f},
                        Case{9, 2056, 2064, 1, 0.7f}}) {
    SCOPED_TRACE("width " + std::to_string(c.width) + " ld " + std::to_string(c.ld) + " rows " +
                 std::to_string(c.n) + " limit " + std::to_string(c.limit));
    Rng rng(uint64_t(c.width) + uint64_t(c.n));
    const auto x = random_bf16(rng, size_t(c.cap) * size_t(c.ld), 2.0f * c.limit);  // about half clamped
    DeviceBuffer<uint16_t> d_x(x.bits);
    auto d_rows = device_int(c.n);
    cuda::clip_inplace(bf16_ptr(d_x), c.ld, c.width, c.limit, c.cap, d_rows.get(), nullptr);
    EXPECT_TRUE(bits_equal(d_x.download(), expected(x.bits, size_t(c.ld), size_t(c.width), c.n, c.limit), "x"));
  }
}

TEST(GpuClip, OneGraphServesStepsWithDifferentCounts) {
  QLLM_REQUIRE_GPU();
  constexpr int kCap = 16, kWidth = 96, kLd = 104;
  constexpr float kLimit = 0.5f;
  Rng rng(5);
  DeviceBuffer<uint16_t> d_x(size_t(kCap) * kLd);
  auto d_rows = device_int(0);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) {
    cuda::clip_inplace(bf16_ptr(d_x), kLd, kWidth, kLimit, kCap, d_rows.get(), s);
  });
  for (int n : {kCap, 2, 0, 9}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    const auto x = random_bf16(rng, size_t(kCap) * kLd, 1.0f);
    d_x.upload(x.bits);
    write_int(d_rows, n);
    graph.replay(stream.get());
    EXPECT_TRUE(bits_equal(d_x.download(), expected(x.bits, kLd, kWidth, n, kLimit), "x"));
  }
}

}  // namespace
