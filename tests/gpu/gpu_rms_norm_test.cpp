// kernels/rms_norm against engine/cpu/ops.h rms_norm on the same (bf16-exact)
// inputs: the fp32 -> bf16 norm of the residual stream, the full-width QK norm
// (OLMoE) and the per-head QK norm (Qwen3-MoE), the last two in place on the
// q and k parts of a fused QKV row so that the row stride and the columns
// that must stay untouched (v) are exercised. Rows past the step's count keep
// their poison (or their input) bit for bit, and one captured graph serves
// steps with different inputs and counts.
#include "engine/cpu/ops.h"
#include "kernels/rms_norm.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

using namespace qllm;
using namespace qllm::test;

namespace {

constexpr float kEps = 1e-6f;

// CPU reference for rows [0, n) of x [rows, width] (row stride ld, columns
// [c0, c0 + heads * hd)), normalised per vector of hd with weight w [hd].
std::vector<float> cpu_norm(const std::vector<float>& x, size_t ld, int n, size_t c0, int heads, int hd,
                            const std::vector<float>& w) {
  std::vector<float> in = block(x, ld, 0, size_t(n), c0, c0 + size_t(heads) * size_t(hd));
  std::vector<float> out(in.size());
  cpu::rms_norm(in.data(), w.data(), out.data(), int64_t(n) * heads, hd, kEps);
  return out;
}

// x fp32 [cap, H] -> y bf16: every active row within bf16 tolerance of the
// CPU norm, every other row still poison.
void check_rms_norm(int cap, int H, int n, uint64_t seed) {
  SCOPED_TRACE("cap " + std::to_string(cap) + " hidden " + std::to_string(H) + " rows " + std::to_string(n));
  Rng rng(seed);
  const auto x = from_bf16(to_bf16(random_values(rng, size_t(cap) * H, 3.0f)));
  const auto w = random_bf16(rng, size_t(H), 1.5f);
  DeviceBuffer<float> d_x(x);
  DeviceBuffer<uint16_t> d_w(w.bits), d_y(size_t(cap) * H);
  auto d_rows = device_int(n);
  d_y.poison();
  cuda::rms_norm(d_x.get(), bf16_ptr(d_w), bf16_ptr(d_y), cap, H, kEps, d_rows.get(), nullptr);
  const auto y = d_y.download();
  EXPECT_TRUE(all_close(from_bf16(slice(y, 0, size_t(n) * H)), cpu_norm(x, size_t(H), n, 0, 1, H, w.f32), kBf16Tol,
                        "y"));
  EXPECT_TRUE(bits_equal(slice(y, size_t(n) * H, y.size()),
                         std::vector<uint16_t>(size_t(cap - n) * H, poison_value<uint16_t>()), "rows past the count"));
}

TEST(GpuRmsNorm, Fp32ToBf16MatchesCpu) {
  QLLM_REQUIRE_GPU();
  check_rms_norm(33, 64, 30, 1);     // tiny models: most threads idle
  check_rms_norm(9, 4096, 9, 2);     // Mixtral: two steps per thread
  check_rms_norm(17, 2048, 1, 3);    // decode of one row
  check_rms_norm(5, 2056, 4, 4);     // a width that is not a multiple of the block's step
}

// A fused QKV buffer [cap, qd + 2 kvd], bf16.
struct Qkv {
  int cap, heads, kv_heads, hd;
  size_t qd() const { return size_t(heads) * size_t(hd); }
  size_t kvd() const { return size_t(kv_heads) * size_t(hd); }
  size_t ld() const { return qd() + 2 * kvd(); }
};

enum class Form { FullWidth, PerHead };

// Norms q and k of a fused QKV buffer in place, the way attn units do, and
// compares: q and k columns of active rows within bf16 tolerance of the CPU,
// v columns and rows past the count unchanged bit for bit.
void check_qk_norm(Form form, const Qkv& s, int n, uint64_t seed) {
  SCOPED_TRACE(std::string(form == Form::PerHead ? "per-head" : "full-width") + " heads " +
               std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) + " hd " + std::to_string(s.hd) +
               " rows " + std::to_string(n) + " of " + std::to_string(s.cap));
  Rng rng(seed);
  const auto x = random_bf16(rng, size_t(s.cap) * s.ld(), 2.0f);
  const size_t wq = form == Form::PerHead ? size_t(s.hd) : s.qd();
  const size_t wk = form == Form::PerHead ? size_t(s.hd) : s.kvd();
  const auto q_w = random_bf16(rng, wq, 1.5f), k_w = random_bf16(rng, wk, 1.5f);
  DeviceBuffer<uint16_t> d_x(x.bits), d_qw(q_w.bits), d_kw(k_w.bits);
  auto d_rows = device_int(n);
  __nv_bfloat16* q = bf16_ptr(d_x);
  __nv_bfloat16* k = q + s.qd();
  const auto ld = int64_t(s.ld());
  if (form == Form::PerHead) {
    cuda::rms_norm_heads_inplace(q, ld, bf16_ptr(d_qw), s.cap, s.heads, s.hd, kEps, d_rows.get(), nullptr);
    cuda::rms_norm_heads_inplace(k, ld, bf16_ptr(d_kw), s.cap, s.kv_heads, s.hd, kEps, d_rows.get(), nullptr);
  } else {
    cuda::rms_norm_inplace(q, ld, bf16_ptr(d_qw), s.cap, int(s.qd()), kEps, d_rows.get(), nullptr);
    cuda::rms_norm_inplace(k, ld, bf16_ptr(d_kw), s.cap, int(s.kvd()), kEps, d_rows.get(), nullptr);
  }
  const auto got = d_x.download();
  const size_t un = size_t(n);
  const auto want_q = form == Form::PerHead ? cpu_norm(x.f32, s.ld(), n, 0, s.heads, s.hd, q_w.f32)
                                            : cpu_norm(x.f32, s.ld(), n, 0, 1, int(s.qd()), q_w.f32);
  const auto want_k = form == Form::PerHead ? cpu_norm(x.f32, s.ld(), n, s.qd(), s.kv_heads, s.hd, k_w.f32)
                                            : cpu_norm(x.f32, s.ld(), n, s.qd(), 1, int(s.kvd()), k_w.f32);
  EXPECT_TRUE(all_close(from_bf16(block(got, s.ld(), 0, un, 0, s.qd())), want_q, kBf16Tol, "q"));
  EXPECT_TRUE(all_close(from_bf16(block(got, s.ld(), 0, un, s.qd(), s.qd() + s.kvd())), want_k, kBf16Tol, "k"));
  EXPECT_TRUE(bits_equal(block(got, s.ld(), 0, un, s.qd() + s.kvd(), s.ld()),
                         block(x.bits, s.ld(), 0, un, s.qd() + s.kvd(), s.ld()), "v columns"));
  EXPECT_TRUE(bits_equal(slice(got, un * s.ld(), got.size()), slice(x.bits, un * s.ld(), got.size()),
                         "rows past the count"));
}

TEST(GpuRmsNorm, FullWidthQkNormInPlaceMatchesCpu) {
  QLLM_REQUIRE_GPU();
  check_qk_norm(Form::FullWidth, {21, 4, 2, 16}, 19, 11);     // tiny OLMoE
  check_qk_norm(Form::FullWidth, {6, 16, 16, 128}, 5, 12);    // OLMoE-1B-7B
}

TEST(GpuRmsNorm, PerHeadQkNormInPlaceMatchesCpu) {
  QLLM_REQUIRE_GPU();
  check_qk_norm(Form::PerHead, {21, 4, 2, 32}, 20, 21);       // tiny Qwen3-MoE
  check_qk_norm(Form::PerHead, {7, 32, 4, 128}, 7, 22);       // Qwen3-30B-A3B: two steps per lane
  check_qk_norm(Form::PerHead, {9, 5, 1, 48}, 3, 23);         // heads not a multiple of the block's warps
}

TEST(GpuRmsNorm, OneGraphServesStepsWithDifferentInputsAndCounts) {
  QLLM_REQUIRE_GPU();
  constexpr int kCap = 24, kH = 512;
  Rng rng(31);
  const auto w = random_bf16(rng, size_t(kH));
  DeviceBuffer<float> d_x(size_t(kCap) * kH);
  DeviceBuffer<uint16_t> d_w(w.bits), d_y(size_t(kCap) * kH);
  auto d_rows = device_int(0);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) {
    cuda::rms_norm(d_x.get(), bf16_ptr(d_w), bf16_ptr(d_y), kCap, kH, kEps, d_rows.get(), s);
  });
  for (int n : {kCap, 3, 0, 17, 1}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    const auto x = random_values(rng, size_t(kCap) * kH, 2.0f);
    d_x.upload(x);
    write_int(d_rows, n);
    d_y.poison();
    graph.replay(stream.get());
    const auto y = d_y.download();
    EXPECT_TRUE(all_close(from_bf16(slice(y, 0, size_t(n) * kH)), cpu_norm(x, kH, n, 0, 1, kH, w.f32), kBf16Tol,
                          "y"));
    EXPECT_TRUE(bits_equal(slice(y, size_t(n) * kH, y.size()),
                           std::vector<uint16_t>(size_t(kCap - n) * kH, poison_value<uint16_t>()),
                           "rows past the count"));
  }
}

}  // namespace
