// cuBLASLt GEMM plans against the CPU reference (engine/cpu/ops.h `linear`):
// random bf16-rounded inputs (never zero), outputs poisoned before every run,
// several real row counts per bucket with zero padding rows, accumulate mode,
// strided and sliced operands, and the plans captured into a graph
// instantiated for device launch and replayed on new data.
//
// Tolerances. The reference sums the same bf16 values in fp32, so the
// difference is the two fp32 summation orders plus, for bf16 out, the final
// rounding. Per element, with a = Σ_k |x_k·w_k| (the scale of the sum):
//   bf16 out: |got − ref| ≤ 2⁻⁸·|ref| + 2e-5·a     (one rounding: ≤ 2⁻⁹·|ref|)
//   fp32 out: |got − ref| ≤ 1e-5·|ref| + 2e-5·a
// 2e-5·a is about ten times the fp32 summation error seen at K = 4096 and a
// tenth of one missing product (a/K), so a dropped or doubled term fails.
// On top, ‖got − ref‖ / ‖ref‖ must stay under 4e-3 (bf16) or 1e-3 (fp32).
#include "engine/common/dtype.h"
#include "engine/cpu/ops.h"
#include "kernels/cuda_check.h"
#include "kernels/gemm.h"
#include "tests/gpu_test_util.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace qllm::cuda {
namespace {

// ---- buckets (no GPU needed) -----------------------------------------------

TEST(GemmBuckets, SmallestPowerOfTwoThatHolds) {
  EXPECT_EQ(bucket_for(1), 1);
  EXPECT_EQ(bucket_for(2), 2);
  EXPECT_EQ(bucket_for(3), 4);
  EXPECT_EQ(bucket_for(8), 8);
  EXPECT_EQ(bucket_for(9), 16);
  EXPECT_EQ(bucket_for(129), 256);
  EXPECT_EQ(bucket_for(kMaxGemmBucket), kMaxGemmBucket);
  EXPECT_EQ(bucket_for(0), 0);
  EXPECT_EQ(bucket_for(-3), 0);
  EXPECT_EQ(bucket_for(kMaxGemmBucket + 1), 0);
  for (int r = 1; r <= kMaxGemmBucket; ++r) {
    const int b = bucket_for(r);
    ASSERT_GE(b, r);
    ASSERT_LT(b / 2, r);  // the next smaller bucket would not hold r
    ASSERT_EQ(b & (b - 1), 0);
    ASSERT_EQ(1 << bucket_index(r), b);
    ASSERT_LT(bucket_index(r), kNumGemmBuckets);
  }
  EXPECT_EQ(bucket_index(0), -1);
  EXPECT_EQ(bucket_index(kMaxGemmBucket + 1), -1);
  static_assert(bucket_for(100) == 128 && bucket_index(100) == 7);
}

TEST(GemmBuckets, BucketsOfASlot) {
  EXPECT_EQ(gemm_buckets(1), (std::vector<int>{1}));
  EXPECT_EQ(gemm_buckets(256), (std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128, 256}));
  EXPECT_EQ(gemm_buckets(300), (std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}));
  EXPECT_EQ(gemm_buckets(kMaxGemmBucket).size(), size_t(kNumGemmBuckets));
  EXPECT_THROW(gemm_buckets(0), std::invalid_argument);
  EXPECT_THROW(gemm_buckets(kMaxGemmBucket + 1), std::invalid_argument);
}

// ---- helpers ---------------------------------------------------------------

// A device allocation freed on scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) { QLLM_CUDA_CHECK(cudaMalloc(&p, bytes)); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  __nv_bfloat16* bf16() const { return static_cast<__nv_bfloat16*>(p); }
  float* f32() const { return static_cast<float*>(p); }
};

constexpr uint16_t kBf16NaN = 0x7fc0;

// rows × ld bf16 values, `cols` of each row random (uniform in ±scale, rounded
// to bf16, never zero), the rest of each row NaN: a GEMM that reads past its
// columns poisons its result.
std::vector<uint16_t> random_bf16(std::mt19937& rng, int64_t rows, int64_t cols, int64_t ld, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<uint16_t> v(size_t(rows * ld), kBf16NaN);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      uint16_t b = f32_to_bf16(u(rng));
      if (bf16_to_f32(b) == 0.0f) b = f32_to_bf16(scale / 256.0f);
      v[size_t(r * ld + c)] = b;
    }
  return v;
}

// The [rows, cols] part of a strided bf16 matrix as dense fp32 (and |values|).
std::vector<float> dense_f32(const std::vector<uint16_t>& v, int64_t rows, int64_t cols, int64_t ld,
                             bool absolute = false) {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float f = bf16_to_f32(v[size_t(r * ld + c)]);
      out[size_t(r * cols + c)] = absolute ? std::fabs(f) : f;
    }
  return out;
}

void upload(void* dst, const void* src, size_t bytes) {
  QLLM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

std::vector<float> download_y(const void* y, GemmOut out, size_t count) {
  std::vector<float> got(count);
  if (out == GemmOut::F32) {
    QLLM_CUDA_CHECK(cudaMemcpy(got.data(), y, count * 4, cudaMemcpyDeviceToHost));
  } else {
    std::vector<uint16_t> bits(count);
    QLLM_CUDA_CHECK(cudaMemcpy(bits.data(), y, count * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < count; ++i) got[i] = bf16_to_f32(bits[i]);
  }
  return got;
}

// Reference y = x·wᵀ (+ y0) and the scale a = |x|·|w|ᵀ (+ |y0|), both [m, n].
struct Reference {
  std::vector<float> y, scale;
};

Reference reference(const std::vector<uint16_t>& x, int64_t ldx, const std::vector<uint16_t>& w,
                    int64_t ldw, int64_t m, int64_t n, int64_t k, const std::vector<float>* y0 = nullptr,
                    int64_t ld_y0 = 0) {
  Reference r;
  r.y.resize(size_t(m * n));
  r.scale.resize(size_t(m * n));
  const auto xf = dense_f32(x, m, k, ldx), wf = dense_f32(w, n, k, ldw);
  const auto xa = dense_f32(x, m, k, ldx, true), wa = dense_f32(w, n, k, ldw, true);
  cpu::linear(xf.data(), wf.data(), r.y.data(), m, k, n);
  cpu::linear(xa.data(), wa.data(), r.scale.data(), m, k, n);
  if (y0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const float v = (*y0)[size_t(i * ld_y0 + j)];
        r.y[size_t(i * n + j)] += v;
        r.scale[size_t(i * n + j)] += std::fabs(v);
      }
  }
  return r;
}

// Checks the real rows of got ([>= m rows, ldy]) against ref; returns a
// description of the first mismatches, empty when all pass.
std::string compare(const std::vector<float>& got, int64_t ldy, const Reference& ref, int64_t m, int64_t n,
                    GemmOut out) {
  const double rel = out == GemmOut::BF16 ? 1.0 / 256.0 : 1e-5;
  const double abs_scale = 2e-5;
  const double norm_tol = out == GemmOut::BF16 ? 4e-3 : 1e-3;
  std::string msg;
  int bad = 0;
  double diff2 = 0, ref2 = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double g = got[size_t(i * ldy + j)], r = ref.y[size_t(i * n + j)];
      const double tol = rel * std::fabs(r) + abs_scale * ref.scale[size_t(i * n + j)];
      diff2 += (g - r) * (g - r);
      ref2 += r * r;
      if (!(std::fabs(g - r) <= tol)) {  // NaN fails too
        if (++bad <= 5)
          msg += "  y[" + std::to_string(i) + "," + std::to_string(j) + "] = " + std::to_string(g) +
                 ", reference " + std::to_string(r) + " (tolerance " + std::to_string(tol) + ")\n";
      }
    }
  if (bad) msg += "  " + std::to_string(bad) + " of " + std::to_string(m * n) + " elements out of tolerance\n";
  const double nrel = std::sqrt(diff2 / ref2);
  if (!(nrel <= norm_tol))
    msg += "  ||got - ref|| / ||ref|| = " + std::to_string(nrel) + " > " + std::to_string(norm_tol) + "\n";
  return msg;
}

struct Case {
  int rows;  // real rows; the plan runs bucket_for(rows)
  int n, k;
  GemmOut out;
  bool accumulate;
};

std::string case_name(const Case& c) {
  return "rows=" + std::to_string(c.rows) + " m=" + std::to_string(bucket_for(c.rows)) + " n=" +
         std::to_string(c.n) + " k=" + std::to_string(c.k) + " out=" + gemm_out_name(c.out) +
         (c.accumulate ? " acc" : "");
}

// Runs one case on zero-padded X and a poisoned (or, accumulating, random) Y;
// checks the real rows against the reference and what the padding rows hold.
void run_case(GemmContext& ctx, const Case& c, uint32_t seed) {
  SCOPED_TRACE(case_name(c));
  std::mt19937 rng(seed);
  const int m = bucket_for(c.rows);
  const auto& plan = ctx.plan({.m = m, .n = c.n, .k = c.k, .out = c.out, .accumulate = c.accumulate});
  ASSERT_EQ(plan.shape().m, m);

  auto x = random_bf16(rng, m, c.k, c.k, 1.0f);
  for (size_t i = size_t(c.rows) * c.k; i < x.size(); ++i) x[i] = 0;  // padding rows: zero
  const auto w = random_bf16(rng, c.n, c.k, c.k, 1.0f / 32.0f);
  const size_t ycount = size_t(m) * c.n, ybytes = ycount * (c.out == GemmOut::F32 ? 4 : 2);
  std::vector<float> y0;
  if (c.accumulate) {
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    y0.resize(ycount);
    for (auto& v : y0) v = u(rng);
  }

  DeviceBuffer dx(x.size() * 2), dw(w.size() * 2), dy(ybytes);
  upload(dx.p, x.data(), x.size() * 2);
  upload(dw.p, w.data(), w.size() * 2);
  if (c.accumulate)
    upload(dy.p, y0.data(), ybytes);
  else
    QLLM_CUDA_CHECK(cudaMemset(dy.p, 0xff, ybytes));  // NaN poison
  if (c.out == GemmOut::F32)
    plan.run(dx.bf16(), dw.bf16(), dy.f32(), nullptr);
  else
    plan.run(dx.bf16(), dw.bf16(), dy.bf16(), nullptr);
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = download_y(dy.p, c.out, ycount);

  const Reference ref = reference(x, c.k, w, c.k, c.rows, c.n, c.k, c.accumulate ? &y0 : nullptr, c.n);
  const std::string msg = compare(got, c.n, ref, c.rows, c.n, c.out);
  EXPECT_TRUE(msg.empty()) << plan.describe() << "\n" << msg;

  // Padding rows: zero X rows give zero rows, or leave accumulated rows as they were.
  int bad = 0;
  for (size_t i = size_t(c.rows) * c.n; i < ycount; ++i) {
    const bool ok = c.accumulate ? std::memcmp(&got[i], &y0[i], 4) == 0 : got[i] == 0.0f;
    if (!ok && ++bad <= 3)
      ADD_FAILURE() << "padding element " << i << " = " << got[i] << ", expected "
                    << (c.accumulate ? y0[i] : 0.0f);
  }
  EXPECT_EQ(bad, 0);
}

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override { QLLM_REQUIRE_GPU(); }
};

// ---- against the reference ---------------------------------------------------

// Real row counts: the bucket itself, one more than the bucket below, and odd
// counts in between; K up to 4096.
const std::vector<Case> kBf16Cases = {
    {1, 256, 64, GemmOut::BF16, false},     {2, 4096, 4096, GemmOut::BF16, false},
    {5, 1000, 4096, GemmOut::BF16, false},  {8, 1024, 1024, GemmOut::BF16, false},
    {17, 384, 2048, GemmOut::BF16, false},  {32, 1024, 4096, GemmOut::BF16, false},
    {100, 768, 1536, GemmOut::BF16, false}, {129, 256, 4096, GemmOut::BF16, false},
    {300, 512, 4096, GemmOut::BF16, false},
};

TEST_F(GemmTest, Bf16OutMatchesCpuLinear) {
  GemmContext ctx;
  uint32_t seed = 1;
  for (const auto& c : kBf16Cases) run_case(ctx, c, seed++);
}

TEST_F(GemmTest, F32OutMatchesCpuLinear) {
  GemmContext ctx;
  uint32_t seed = 100;
  for (auto c : kBf16Cases) {
    c.out = GemmOut::F32;
    run_case(ctx, c, seed++);
  }
  // An LM-head-like shape: many columns, few rows.
  run_case(ctx, {3, 50304, 2048, GemmOut::F32, false}, seed++);
}

TEST_F(GemmTest, AccumulatesIntoF32) {
  GemmContext ctx;
  uint32_t seed = 200;
  for (const Case& c : std::vector<Case>{{1, 2048, 2048, GemmOut::F32, true},
                                         {6, 4096, 4096, GemmOut::F32, true},
                                         {33, 1024, 2048, GemmOut::F32, true},
                                         {256, 2048, 1024, GemmOut::F32, true}})
    run_case(ctx, c, seed++);
}

// Whatever the padding rows of X hold, the real rows are the same.
TEST_F(GemmTest, RealRowsIgnorePaddingContents) {
  GemmContext ctx;
  std::mt19937 rng(300);
  const int rows = 19, m = bucket_for(rows), n = 512, k = 1024;
  const auto& plan = ctx.plan({.m = m, .n = n, .k = k, .out = GemmOut::F32});
  const auto x = random_bf16(rng, m, k, k, 1.0f);  // padding rows random, not zero
  const auto w = random_bf16(rng, n, k, k, 1.0f / 32.0f);
  DeviceBuffer dx(x.size() * 2), dw(w.size() * 2), dy(size_t(m) * n * 4);
  upload(dx.p, x.data(), x.size() * 2);
  upload(dw.p, w.data(), w.size() * 2);
  QLLM_CUDA_CHECK(cudaMemset(dy.p, 0xff, size_t(m) * n * 4));
  plan.run(dx.bf16(), dw.bf16(), dy.f32(), nullptr);
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = download_y(dy.p, GemmOut::F32, size_t(m) * n);
  // All m rows are computed: the padding rows too are X·Wᵀ of what they hold.
  const std::string msg = compare(got, n, reference(x, k, w, k, m, n, k), m, n, GemmOut::F32);
  EXPECT_TRUE(msg.empty()) << msg;
}

// The same plan on the same inputs gives the same bits (the engine's "a
// batched pass equals each sequence run alone" relies on it per row).
TEST_F(GemmTest, RunsAreBitwiseRepeatable) {
  GemmContext ctx;
  std::mt19937 rng(400);
  const int m = 64, n = 2048, k = 4096;
  const auto& plan = ctx.plan({.m = m, .n = n, .k = k, .out = GemmOut::F32});
  const auto x = random_bf16(rng, m, k, k, 1.0f), w = random_bf16(rng, n, k, k, 1.0f / 32.0f);
  DeviceBuffer dx(x.size() * 2), dw(w.size() * 2), dy(size_t(m) * n * 4);
  upload(dx.p, x.data(), x.size() * 2);
  upload(dw.p, w.data(), w.size() * 2);
  std::vector<float> first;
  for (int rep = 0; rep < 3; ++rep) {
    QLLM_CUDA_CHECK(cudaMemset(dy.p, 0xff, size_t(m) * n * 4));
    plan.run(dx.bf16(), dw.bf16(), dy.f32(), nullptr);
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = download_y(dy.p, GemmOut::F32, size_t(m) * n);
    if (rep == 0)
      first = got;
    else
      EXPECT_EQ(std::memcmp(first.data(), got.data(), got.size() * 4), 0) << "run " << rep << " differs";
  }
}

// Row strides larger than the matrix (the gaps hold NaN and must not be read
// or, in Y, written) and operands that are slices aligned to 16 bytes only.
TEST_F(GemmTest, StridedAndSlicedOperands) {
  GemmContext ctx;
  std::mt19937 rng(500);
  const int rows = 7, m = 8, n = 300, k = 520;
  const int64_t ldx = 640, ldw = 528, ldy = 320;
  for (GemmOut out : {GemmOut::F32, GemmOut::BF16}) {
    SCOPED_TRACE(gemm_out_name(out));
    const GemmShape shape{.m = m, .n = n, .k = k, .out = out, .ldx = ldx, .ldw = ldw, .ldy = ldy, .align = 16};
    const auto& plan = ctx.plan(shape);
    auto x = random_bf16(rng, m, k, ldx, 1.0f);
    for (int64_t i = rows * ldx; i < m * ldx; ++i) x[size_t(i)] = 0;
    const auto w = random_bf16(rng, n, k, ldw, 1.0f / 32.0f);
    const size_t es = out == GemmOut::F32 ? 4 : 2;
    const size_t off = 16;  // bytes: each operand starts 16 bytes into its buffer
    DeviceBuffer dx(off + x.size() * 2), dw(off + w.size() * 2), dy(off + size_t(m) * ldy * es);
    auto* px = reinterpret_cast<__nv_bfloat16*>(static_cast<char*>(dx.p) + off);
    auto* pw = reinterpret_cast<__nv_bfloat16*>(static_cast<char*>(dw.p) + off);
    void* py = static_cast<char*>(dy.p) + off;
    upload(px, x.data(), x.size() * 2);
    upload(pw, w.data(), w.size() * 2);
    QLLM_CUDA_CHECK(cudaMemset(dy.p, 0xff, off + size_t(m) * ldy * es));
    if (out == GemmOut::F32)
      plan.run(px, pw, static_cast<float*>(py), nullptr);
    else
      plan.run(px, pw, static_cast<__nv_bfloat16*>(py), nullptr);
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = download_y(py, out, size_t(m) * ldy);
    const std::string msg = compare(got, ldy, reference(x, ldx, w, ldw, rows, n, k), rows, n, out);
    EXPECT_TRUE(msg.empty()) << plan.describe() << "\n" << msg;
    int written_gap = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = n; j < ldy; ++j) written_gap += !std::isnan(got[size_t(i * ldy + j)]);
    EXPECT_EQ(written_gap, 0) << "elements between n and ldy were written";
  }
}

TEST_F(GemmTest, PlansAreCachedPerShape) {
  GemmContext ctx(size_t(4) << 20);
  EXPECT_EQ(ctx.workspace_bytes(), size_t(4) << 20);
  const GemmShape a{.m = 8, .n = 1024, .k = 512, .out = GemmOut::F32};
  const GemmPlan& p1 = ctx.plan(a);
  EXPECT_EQ(&ctx.plan(a), &p1);
  EXPECT_EQ(ctx.num_plans(), 1u);
  GemmShape b = a;
  b.accumulate = true;
  EXPECT_NE(&ctx.plan(b), &p1);
  b.m = 16;
  ctx.plan(b);
  EXPECT_EQ(ctx.num_plans(), 3u);
  EXPECT_LE(p1.workspace_needed(), ctx.workspace_bytes());
  EXPECT_FALSE(p1.describe().empty());
}

TEST_F(GemmTest, MalformedShapesAreRefused) {
  GemmContext ctx;
  EXPECT_THROW(ctx.plan({.m = 8, .n = 0, .k = 64}), std::invalid_argument);
  EXPECT_THROW(ctx.plan({.m = 0, .n = 64, .k = 64}), std::invalid_argument);
  EXPECT_THROW(ctx.plan({.m = 8, .n = 64, .k = 64, .out = GemmOut::BF16, .accumulate = true}),
               std::invalid_argument);
  EXPECT_THROW(ctx.plan({.m = 8, .n = 64, .k = 64, .ldx = 32}), std::invalid_argument);
  EXPECT_THROW(ctx.plan({.m = 8, .n = 64, .k = 64, .ldy = 63}), std::invalid_argument);
  EXPECT_THROW(ctx.plan({.m = 8, .n = 64, .k = 64, .align = 24}), std::invalid_argument);
  EXPECT_EQ(ctx.num_plans(), 0u);
}

// ---- graphs for device launch ------------------------------------------------

// Two chained plans (bf16 y1 = x·w1ᵀ, then fp32 y2 += y1·w2ᵀ, an MLP-like
// pair) captured once, instantiated for device launch, uploaded, and launched
// from the host several times with new data written into the same buffers.
TEST_F(GemmTest, CapturedIntoDeviceLaunchGraph) {
  GemmContext ctx;
  const int rows = 5, m = bucket_for(rows), h = 2048, f = 1024;
  const auto& up = ctx.plan({.m = m, .n = f, .k = h, .out = GemmOut::BF16});
  const auto& down = ctx.plan({.m = m, .n = h, .k = f, .out = GemmOut::F32, .accumulate = true});
  DeviceBuffer dx(size_t(m) * h * 2), dw1(size_t(f) * h * 2), dw2(size_t(h) * f * 2);
  DeviceBuffer dy1(size_t(m) * f * 2), dy2(size_t(m) * h * 4);

  cudaStream_t s = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  QLLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  up.run(dx.bf16(), dw1.bf16(), dy1.bf16(), s);
  down.run(dy1.bf16(), dw2.bf16(), dy2.f32(), s);
  QLLM_CUDA_CHECK(cudaStreamEndCapture(s, &graph));

  // Only node kinds a device-launched graph may hold.
  size_t count = 0;
  QLLM_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &count));
  std::vector<cudaGraphNode_t> nodes(count);
  QLLM_CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &count));
  EXPECT_GE(count, 2u);
  for (auto node : nodes) {
    cudaGraphNodeType t{};
    QLLM_CUDA_CHECK(cudaGraphNodeGetType(node, &t));
    EXPECT_TRUE(t == cudaGraphNodeTypeKernel || t == cudaGraphNodeTypeMemset ||
                t == cudaGraphNodeTypeMemcpy || t == cudaGraphNodeTypeGraph)
        << "node type " << int(t) << " cannot be launched from the device";
  }

  cudaGraphExec_t exec = nullptr;
  QLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, cudaGraphInstantiateFlagDeviceLaunch));
  QLLM_CUDA_CHECK(cudaGraphUpload(exec, s));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(s));

  std::mt19937 rng(600);
  for (int launch = 0; launch < 4; ++launch) {
    SCOPED_TRACE("launch " + std::to_string(launch));
    auto x = random_bf16(rng, m, h, h, 1.0f);
    for (size_t i = size_t(rows) * h; i < x.size(); ++i) x[i] = 0;
    const auto w1 = random_bf16(rng, f, h, h, 1.0f / 32.0f);
    const auto w2 = random_bf16(rng, h, f, f, 1.0f / 32.0f);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> y0(size_t(m) * h);
    for (auto& v : y0) v = u(rng);
    upload(dx.p, x.data(), x.size() * 2);
    upload(dw1.p, w1.data(), w1.size() * 2);
    upload(dw2.p, w2.data(), w2.size() * 2);
    upload(dy2.p, y0.data(), y0.size() * 4);
    QLLM_CUDA_CHECK(cudaMemset(dy1.p, 0xff, size_t(m) * f * 2));  // poison

    QLLM_CUDA_CHECK(cudaGraphLaunch(exec, s));
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s));

    const auto y1 = download_y(dy1.p, GemmOut::BF16, size_t(m) * f);
    const auto y2 = download_y(dy2.p, GemmOut::F32, size_t(m) * h);
    std::string msg = compare(y1, f, reference(x, h, w1, h, rows, f, h), rows, f, GemmOut::BF16);
    EXPECT_TRUE(msg.empty()) << "up: " << up.describe() << "\n" << msg;
    // The second GEMM's reference starts from the first's actual output.
    std::vector<uint16_t> y1_bits(y1.size());
    for (size_t i = 0; i < y1.size(); ++i) y1_bits[i] = f32_to_bf16(y1[i]);  // exact: y1 is bf16
    msg = compare(y2, h, reference(y1_bits, f, w2, f, rows, h, f, &y0, h), rows, h, GemmOut::F32);
    EXPECT_TRUE(msg.empty()) << "down: " << down.describe() << "\n" << msg;
    for (size_t i = size_t(rows) * h; i < y2.size(); ++i)
      ASSERT_EQ(std::memcmp(&y2[i], &y0[i], 4), 0) << "padding row element " << i << " changed";
  }

  QLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
  QLLM_CUDA_CHECK(cudaGraphDestroy(graph));
  QLLM_CUDA_CHECK(cudaStreamDestroy(s));
}

}  // namespace
}  // namespace qllm::cuda
