// kernels/rope_kv_write against engine/cpu/ops.h rope on the same bf16 inputs,
// on a fused QKV buffer (q, k, v at their column offsets of one row) and a
// poisoned paged cache:
//   * q of active rows rotated in place (bf16 tolerance); k and v columns of
//     the buffer untouched;
//   * each active row's rotated k and its v (bit for bit) at its slot of the
//     cache, every other slot still poison (rows with slot -1, padding rows
//     with position -1 and rows past the count write nothing);
//   * positions up to 32767 with theta 1e6 (angles of thousands of radians);
//   * a slot outside the cache raises the error flag and writes nothing;
//   * one captured graph serves steps with different positions, slots and counts.
#include "engine/cpu/ops.h"
#include "kernels/rope_kv_write.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <algorithm>
#include <numeric>

using namespace qllm;
using namespace qllm::test;

namespace {

struct Shape {
  int heads, kv_heads, hd;
  double theta;
  size_t qd() const { return size_t(heads) * size_t(hd); }
  size_t kvd() const { return size_t(kv_heads) * size_t(hd); }
  size_t ld() const { return qd() + 2 * kvd(); }
};

// One step's inputs and the device buffers it runs on.
struct Step {
  Shape s;
  int cap;
  int64_t slots;
  Rng rng;
  Bf16Values qkv;
  std::vector<int32_t> pos;
  std::vector<int64_t> slot;
  DeviceBuffer<uint16_t> d_qkv, d_kc, d_vc;
  DeviceBuffer<int32_t> d_pos, d_rows = device_int(0), d_error = device_int(0);
  DeviceBuffer<int64_t> d_slot;

  Step(const Shape& shape, int cap_, int64_t slots_, uint64_t seed)
      : s(shape), cap(cap_), slots(slots_), rng(seed), d_qkv(size_t(cap_) * shape.ld()),
        d_kc(size_t(slots_) * shape.kvd()), d_vc(size_t(slots_) * shape.kvd()), d_pos(size_t(cap_)),
        d_slot(size_t(cap_)) {}

  // New random q/k/v, positions up to max_pos and distinct slots; rows in
  // `no_slot` get slot -1, rows in `padding` position -1. Poisons the cache.
  void randomize(int max_pos, const std::vector<int>& no_slot = {}, const std::vector<int>& padding = {}) {
    qkv = random_bf16(rng, size_t(cap) * s.ld(), 2.0f);
    pos.resize(size_t(cap));
    for (auto& p : pos) p = int32_t(rng.integer(0, max_pos));
    std::vector<int64_t> all(static_cast<size_t>(slots));
    std::iota(all.begin(), all.end(), int64_t(0));
    std::shuffle(all.begin(), all.end(), rng.engine());
    slot.assign(all.begin(), all.begin() + cap);
    for (int r : no_slot) slot[size_t(r)] = -1;
    for (int r : padding) pos[size_t(r)] = -1;
    d_qkv.upload(qkv.bits);
    d_pos.upload(pos);
    d_slot.upload(slot);
    d_kc.poison();
    d_vc.poison();
  }

  void launch(cudaStream_t stream) {
    __nv_bfloat16* q = bf16_ptr(d_qkv);
    const auto ld = int64_t(s.ld());
    cuda::rope_kv_write(q, ld, q + s.qd(), ld, q + s.qd() + s.kvd(), ld, {s.heads, s.kv_heads, s.hd, s.theta},
                        d_pos.get(), d_slot.get(), bf16_ptr(d_kc), bf16_ptr(d_vc), slots, cap, d_rows.get(),
                        d_error.get(), stream);
  }

  // Checks the buffer and the cache after a launch with n active rows.
  void check(int n) const {
    const auto got = d_qkv.download(), kc = d_kc.download(), vc = d_vc.download();
    const size_t ld = s.ld(), qd = s.qd(), kvd = s.kvd();
    std::vector<uint16_t> want_qkv = qkv.bits;  // q rotated below, k and v unchanged
    std::vector<float> got_q, want_q, got_k, want_k;
    std::vector<uint16_t> want_kc(kc.size(), poison_value<uint16_t>()), want_vc = want_kc;
    std::vector<bool> k_slot(static_cast<size_t>(slots), false);
    for (int t = 0; t < n; ++t) {
      const size_t r = size_t(t);
      if (pos[r] < 0) continue;
      std::vector<float> q(qkv.f32.begin() + std::ptrdiff_t(r * ld), qkv.f32.begin() + std::ptrdiff_t(r * ld + qd));
      std::vector<float> k(qkv.f32.begin() + std::ptrdiff_t(r * ld + qd),
                           qkv.f32.begin() + std::ptrdiff_t(r * ld + qd + kvd));
      cpu::rope(q.data(), s.heads, s.hd, pos[r], s.theta);
      cpu::rope(k.data(), s.kv_heads, s.hd, pos[r], s.theta);
      want_q.insert(want_q.end(), q.begin(), q.end());
      for (size_t c = 0; c < qd; ++c) got_q.push_back(bf16_to_f32(got[r * ld + c]));
      for (size_t c = 0; c < qd; ++c) want_qkv[r * ld + c] = got[r * ld + c];  // compared with tolerance above
      if (slot[r] < 0) continue;
      const size_t sl = size_t(slot[r]);
      k_slot[sl] = true;
      want_k.insert(want_k.end(), k.begin(), k.end());
      for (size_t c = 0; c < kvd; ++c) {
        got_k.push_back(bf16_to_f32(kc[sl * kvd + c]));
        want_kc[sl * kvd + c] = kc[sl * kvd + c];  // compared with tolerance above
        want_vc[sl * kvd + c] = qkv.bits[r * ld + qd + kvd + c];
      }
    }
    EXPECT_TRUE(all_close(got_q, want_q, kBf16Tol, "rotated q"));
    EXPECT_TRUE(all_close(got_k, want_k, kBf16Tol, "rotated k in the cache"));
    EXPECT_TRUE(bits_equal(got, want_qkv, "q of inactive rows, k and v columns"));
    EXPECT_TRUE(bits_equal(kc, want_kc, "k cache slots not written this step"));
    EXPECT_TRUE(bits_equal(vc, want_vc, "v cache"));
  }
};

void run_case(const Shape& s, int cap, int n, uint64_t seed) {
  SCOPED_TRACE("heads " + std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) + " hd " +
               std::to_string(s.hd) + " rows " + std::to_string(n) + " of " + std::to_string(cap));
  Step st(s, cap, 3 * cap + 5, seed);
  st.randomize(32767, {1}, {2});
  write_int(st.d_rows, n);
  st.launch(nullptr);
  st.check(n);
  EXPECT_EQ(read_int(st.d_error), 0);
}

TEST(GpuRopeKvWrite, MatchesCpuRopeAndWritesOnlyActiveSlots) {
  QLLM_REQUIRE_GPU();
  run_case({4, 2, 16, 1e6}, 19, 17, 1);       // tiny Mixtral
  run_case({4, 2, 32, 1e6}, 8, 8, 2);         // tiny Qwen3-MoE
  run_case({32, 8, 128, 1e6}, 6, 5, 3);       // Mixtral-8x7B
  run_case({16, 16, 128, 1e4}, 5, 4, 4);      // OLMoE-1B-7B
  run_case({32, 4, 128, 1e6}, 4, 3, 5);       // Qwen3-30B-A3B
}

TEST(GpuRopeKvWrite, SmallPositionsAreExact) {
  QLLM_REQUIRE_GPU();
  // Position 0 is the identity: q and the cached k equal the inputs bit for bit.
  const Shape s{4, 2, 16, 1e6};
  Step st(s, 6, 20, 9);
  st.randomize(0);
  write_int(st.d_rows, 6);
  st.launch(nullptr);
  const auto got = st.d_qkv.download(), kc = st.d_kc.download();
  EXPECT_TRUE(bits_equal(got, st.qkv.bits, "q at position 0"));
  for (int t = 0; t < 6; ++t)
    EXPECT_TRUE(bits_equal(slice(kc, size_t(st.slot[size_t(t)]) * s.kvd(), size_t(st.slot[size_t(t)] + 1) * s.kvd()),
                           block(st.qkv.bits, s.ld(), size_t(t), size_t(t) + 1, s.qd(), s.qd() + s.kvd()),
                           "k at position 0, row " + std::to_string(t)));
}

TEST(GpuRopeKvWrite, SlotOutsideTheCacheSetsTheFlag) {
  QLLM_REQUIRE_GPU();
  const Shape s{4, 2, 16, 1e6};
  Step st(s, 5, 12, 3);
  st.randomize(100);
  st.slot[3] = st.slots;  // one past the end
  st.d_slot.upload(st.slot);
  write_int(st.d_rows, 5);
  st.launch(nullptr);
  EXPECT_EQ(read_int(st.d_error), 1);
  st.slot[3] = -1;  // what must have happened: q rotated, nothing written for row 3
  st.check(5);
}

TEST(GpuRopeKvWrite, OneGraphServesStepsWithDifferentPositionsSlotsAndCounts) {
  QLLM_REQUIRE_GPU();
  const Shape s{8, 2, 64, 1e6};
  Step st(s, 12, 40, 17);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t str) { st.launch(str); });
  for (int n : {12, 1, 7, 0, 12}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    st.randomize(4096, {n > 2 ? 2 : 0}, {});
    write_int(st.d_rows, n);
    graph.replay(stream.get());
    st.check(n);
  }
  EXPECT_EQ(read_int(st.d_error), 0);
}

}  // namespace
