// kernels/silu_mul against engine/cpu/ops.h silu on the same bf16 inputs (the
// fused [gate | up] GEMM output), rows past the step's count keep their
// poison; the count is read through a pointer into an array (an expert's
// counts[e]); one captured graph serves steps with different inputs and counts.
#include "engine/cpu/ops.h"
#include "kernels/silu_mul.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

using namespace qllm;
using namespace qllm::test;

namespace {

// silu(gate) * up for rows [0, n) of gate_up [*, 2F].
std::vector<float> cpu_silu_mul(const std::vector<float>& gu, int F, int n) {
  std::vector<float> out;
  for (size_t r = 0; r < size_t(n); ++r)
    for (size_t i = 0; i < size_t(F); ++i)
      out.push_back(cpu::silu(gu[r * 2 * size_t(F) + i]) * gu[r * 2 * size_t(F) + size_t(F) + i]);
  return out;
}

void check(const std::vector<uint16_t>& out, const Bf16Values& gu, int F, int n, int cap) {
  const size_t split = size_t(n) * size_t(F);
  EXPECT_TRUE(all_close(from_bf16(slice(out, 0, split)), cpu_silu_mul(gu.f32, F, n), kBf16Tol, "out"));
  EXPECT_TRUE(bits_equal(slice(out, split, out.size()),
                         std::vector<uint16_t>(size_t(cap - n) * size_t(F), poison_value<uint16_t>()),
                         "rows past the count"));
}

TEST(GpuSiluMul, MatchesCpu) {
  QLLM_REQUIRE_GPU();
  struct Case {
    int F, cap, n;
  };
  for (const Case c : {Case{128, 37, 30}, Case{14336, 5, 4}, Case{768, 64, 64}, Case{1024, 9, 1}, Case{136, 3, 0}}) {
    SCOPED_TRACE("ffn " + std::to_string(c.F) + " rows " + std::to_string(c.n) + " of " + std::to_string(c.cap));
    Rng rng(uint64_t(c.F + c.n));
    const auto gu = random_bf16(rng, size_t(c.cap) * 2 * size_t(c.F), 6.0f);  // silu's curved part and tails
    DeviceBuffer<uint16_t> d_gu(gu.bits), d_out(size_t(c.cap) * size_t(c.F));
    DeviceBuffer<int32_t> d_counts(std::vector<int32_t>{c.cap + 5, -1, c.n, 0});  // the count is counts[2]
    d_out.poison();
    cuda::silu_mul(bf16_ptr(d_gu), c.F, bf16_ptr(d_out), c.cap, d_counts.get() + 2, nullptr);
    check(d_out.download(), gu, c.F, c.n, c.cap);
  }
}

TEST(GpuSiluMul, OneGraphServesStepsWithDifferentInputsAndCounts) {
  QLLM_REQUIRE_GPU();
  constexpr int F = 256, kCap = 32;
  Rng rng(8);
  DeviceBuffer<uint16_t> d_gu(size_t(kCap) * 2 * F), d_out(size_t(kCap) * F);
  auto d_rows = device_int(0);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) {
    cuda::silu_mul(bf16_ptr(d_gu), F, bf16_ptr(d_out), kCap, d_rows.get(), s);
  });
  for (int n : {kCap, 1, 0, 20}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    const auto gu = random_bf16(rng, size_t(kCap) * 2 * F, 4.0f);
    d_gu.upload(gu.bits);
    write_int(d_rows, n);
    d_out.poison();
    graph.replay(stream.get());
    check(d_out.download(), gu, F, n, kCap);
  }
}

}  // namespace
