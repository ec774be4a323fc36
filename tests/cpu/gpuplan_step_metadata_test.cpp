// The host packer of a GPU step (engine/gpu/step_metadata.h), on the CPU:
// the packed rows are the rows cpu::ReferenceModel::begin makes of the same
// chunks (tokens, positions, sequences, KV slots, logit rows), padding holds
// the -1 sentinels, every byte of the block is written, and a pass that does
// not fit the slot or is malformed is refused with a message before anything
// is written.
#include "engine/common/progress.h"
#include "engine/cpu/reference_model.h"
#include "engine/gpu/layout.h"
#include "engine/gpu/step_metadata.h"
#include "engine/model/make_model.h"
#include "tests/test_errors.h"
#include "tests/test_paths.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

using namespace qllm;
using namespace qllm::gpu;

namespace {

struct Tiny {
  Checkpoint ck;
  cpu::ReferenceModel model;
};

const Tiny& tiny() {
  static std::unique_ptr<Tiny> t;
  if (!t) {
    auto ck = test::open_tiny("mixtral", 5, "gpuplan-step");
    auto m = cpu::ReferenceModel(ck);
    t = std::make_unique<Tiny>(Tiny{std::move(ck), std::move(m)});
  }
  return *t;
}

constexpr int kT = 16, kS = 4, kB = 5;  // slot: 16 rows, 4 sequences, 5 blocks per sequence
constexpr KvGeometry kKv{4, 16};        // 16 blocks of 4

std::vector<std::byte> block(const StepLayout& L, uint8_t fill) { return std::vector<std::byte>(L.bytes, std::byte{fill}); }

TEST(GpuStepLayout, RegionsAlignedInOrderAndSized) {
  const StepLayout L = plan_step_layout(kT, kS, kB);
  const Region in_order[] = {L.rows, L.logit_count, L.zero, L.tokens, L.pos, L.seq, L.kv_slot, L.tables,
                             L.logit_rows, L.sampling};
  uint64_t end = 0;
  for (const Region& r : in_order) {
    EXPECT_EQ(r.offset % kAlign, 0u);
    EXPECT_GE(r.offset, end);
    end = r.end();
  }
  EXPECT_EQ(L.bytes, align_up(end));
  EXPECT_EQ(L.tokens.bytes, kT * 4u);
  EXPECT_EQ(L.kv_slot.bytes, kT * 8u);
  EXPECT_EQ(L.tables.bytes, kS * kB * 4u);
  EXPECT_EQ(L.sampling.bytes, kS * sizeof(cuda::SamplingRow));
}

TEST(GpuStepMetadata, RowsAreTheReferencePassRows) {
  const auto& t = tiny();
  // The CPU reference's batching test: a prefill, a short prompt and a
  // partial chunk without logits, in scattered blocks; then a pass of a
  // decode row, the rest of a prompt and another decode row.
  const std::vector<int32_t> a = {11, 12, 13, 14, 15, 16, 17}, b = {21, 22, 23}, c = {31, 32, 33, 34, 35};
  const std::vector<int32_t> ta = {9, 2}, tb = {7}, tc = {0, 14};
  const int32_t na = 5, nb = 6;
  const cpu::SeqChunk pass1[] = {{a, 0, ta, true}, {b, 0, tb, true}, {std::span(c).first(3), 0, tc, false}};
  const cpu::SeqChunk pass2[] = {{std::span(&na, 1), 7, ta, true},
                                 {std::span(c).subspan(3), 3, tc, true},
                                 {std::span(&nb, 1), 3, tb, true}};
  const StepLayout L = plan_step_layout(kT, kS, kB);
  const auto kv = t.model.new_paged_kv(int(kKv.num_blocks), kKv.block_size);
  for (auto chunks : {std::span<const cpu::SeqChunk>(pass1), std::span<const cpu::SeqChunk>(pass2)}) {
    const cpu::Pass ref = t.model.begin(kv, chunks);
    auto out = block(L, 0xAB);
    const StepInfo info = pack_step(L, kKv, t.ck.desc().vocab, chunks, {}, out);
    const int T = ref.T;
    ASSERT_EQ(info.rows, T);
    EXPECT_EQ(info.logit_rows, ref.logit_rows);
    EXPECT_EQ(read_region<int32_t>(out, L.rows, 1)[0], T);
    EXPECT_EQ(read_region<int32_t>(out, L.logit_count, 1)[0], int32_t(ref.logit_rows.size()));
    EXPECT_EQ(read_region<int32_t>(out, L.zero, 1)[0], 0);
    const auto tokens = read_region<int32_t>(out, L.tokens, kT);
    const auto pos = read_region<int32_t>(out, L.pos, kT);
    const auto seq = read_region<int32_t>(out, L.seq, kT);
    const auto slot = read_region<int64_t>(out, L.kv_slot, kT);
    for (int r = 0; r < kT; ++r) {
      if (r < T) {
        EXPECT_EQ(tokens[size_t(r)], ref.tokens[size_t(r)]) << r;
        EXPECT_EQ(pos[size_t(r)], ref.pos[size_t(r)]) << r;
        EXPECT_EQ(seq[size_t(r)], ref.seq[size_t(r)]) << r;
        EXPECT_EQ(slot[size_t(r)], ref.slot[size_t(r)]) << r;
      } else {  // padding: sentinels
        EXPECT_EQ(tokens[size_t(r)], -1) << r;
        EXPECT_EQ(pos[size_t(r)], -1) << r;
        EXPECT_EQ(seq[size_t(r)], -1) << r;
        EXPECT_EQ(slot[size_t(r)], -1) << r;
      }
    }
    const auto tables = read_region<int32_t>(out, L.tables, size_t(kS * kB));
    for (int s = 0; s < kS; ++s)
      for (int j = 0; j < kB; ++j) {
        const bool used = size_t(s) < ref.tables.size() && size_t(j) < ref.tables[size_t(s)].size();
        EXPECT_EQ(tables[size_t(s * kB + j)], used ? ref.tables[size_t(s)][size_t(j)] : -1) << s << "," << j;
      }
    const auto lr = read_region<int32_t>(out, L.logit_rows, kS);
    for (int i = 0; i < kS; ++i)
      EXPECT_EQ(lr[size_t(i)], size_t(i) < ref.logit_rows.size() ? ref.logit_rows[size_t(i)] : -1) << i;
  }
}

TEST(GpuStepMetadata, SamplingRowsFollowTheLogitRowsAndEveryByteIsWritten) {
  const std::vector<int32_t> a = {1, 2, 3}, b = {4, 5}, c = {6};
  const std::vector<int32_t> ta = {0}, tb = {1}, tc = {2};
  const cpu::SeqChunk chunks[] = {{a, 0, ta, true}, {b, 0, tb, false}, {c, 0, tc, true}};
  cuda::SamplingRow sp[3];
  for (int i = 0; i < 3; ++i) {
    sp[i].temperature = 0.5 + i;
    sp[i].top_p = 0.9;
    sp[i].top_k = 10 + i;
    sp[i].seed = 100u + unsigned(i);
    sp[i].step = 7u * unsigned(i);
  }
  const StepLayout L = plan_step_layout(kT, kS, kB);
  auto x = block(L, 0x00), y = block(L, 0xFF);
  const StepInfo info = pack_step(L, kKv, 512, chunks, sp, x);
  pack_step(L, kKv, 512, chunks, sp, y);
  EXPECT_EQ(x, y);  // nothing of the old contents is left
  EXPECT_EQ(info.logit_rows, (std::vector<int>{2, 5}));
  EXPECT_EQ(info.logit_seq, (std::vector<int>{0, 2}));
  const auto rows = read_region<cuda::SamplingRow>(x, L.sampling, kS);
  auto same = [](const cuda::SamplingRow& g, const cuda::SamplingRow& w) {
    return std::memcmp(&g, &w, sizeof(g)) == 0;
  };
  EXPECT_TRUE(same(rows[0], sp[0]));  // logit row 0 is chunk 0
  EXPECT_TRUE(same(rows[1], sp[2]));  // logit row 1 is chunk 2 (chunk 1 asked for none)
  EXPECT_TRUE(same(rows[2], cuda::SamplingRow{}));
  EXPECT_TRUE(same(rows[3], cuda::SamplingRow{}));
  // No sampling given: every row greedy.
  pack_step(L, kKv, 512, chunks, {}, x);
  const auto greedy = read_region<cuda::SamplingRow>(x, L.sampling, kS);
  for (const auto& r : greedy) EXPECT_TRUE(same(r, cuda::SamplingRow{}));
}

TEST(GpuStepMetadata, RefusesWhatDoesNotFitOrIsMalformed) {
  const StepLayout L = plan_step_layout(kT, kS, kB);
  const std::vector<int32_t> t17(17, 1), t4 = {1, 2, 3, 4}, t1 = {1};
  const std::vector<int32_t> b0 = {0}, b5 = {0, 1, 2, 3, 4}, b6 = {0, 1, 2, 3, 4, 5}, bad = {0, 16};
  auto out = block(L, 0x5A);
  const auto before = out;
  auto msg = [&](std::vector<cpu::SeqChunk> chunks, std::vector<cuda::SamplingRow> sp = {}) {
    return test::error_of([&] { pack_step(L, kKv, 512, chunks, sp, out); });
  };
  EXPECT_HAS(msg({{t17, 0, b5, true}}), "17 tokens does not fit the slot's 16 tokens per step");
  EXPECT_HAS(msg({{t1, 0, b0, true}, {t1, 0, b0, true}, {t1, 0, b0, true}, {t1, 0, b0, true}, {t1, 0, b0, true}}),
             "5 sequences does not fit the slot's 4 sequences per step");
  EXPECT_HAS(msg({{t1, 0, b6, true}}), "6 blocks, more than the slot's 5 per sequence");
  EXPECT_HAS(msg({{t4, 1, b0, true}}), "does not cover positions up to 5");
  EXPECT_HAS(msg({{t4, -1, b0, true}}), "does not cover");
  EXPECT_HAS(msg({{t4, 0, bad, true}}), "block 16 is outside the KV cache's 16 blocks");
  const std::vector<int32_t> oov = {1, 512};
  EXPECT_HAS(msg({{oov, 0, b0, true}}), "token id 512 is outside the vocabulary [0, 512)");
  const std::vector<int32_t> neg = {-1};
  EXPECT_HAS(msg({{neg, 0, b0, true}}), "token id -1");
  EXPECT_HAS(msg({{{}, 0, b0, true}}), "needs at least one token");
  EXPECT_HAS(msg({{t1, 0, b0, true}}, std::vector<cuda::SamplingRow>(2)), "got 2 sampling rows");
  EXPECT_EQ(out, before);  // refused passes write nothing
}

TEST(GpuStepMetadata, EmptyChunksKeepTheirTableButGetNoRows) {
  const StepLayout L = plan_step_layout(kT, kS, kB);
  const std::vector<int32_t> a = {3, 4}, ta = {1}, tb = {6};
  const cpu::SeqChunk chunks[] = {{{}, 0, tb, true}, {a, 2, ta, true}};
  auto out = block(L, 0);
  const StepInfo info = pack_step(L, kKv, 512, chunks, {}, out);
  EXPECT_EQ(info.rows, 2);
  EXPECT_EQ(info.logit_rows, (std::vector<int>{1}));
  EXPECT_EQ(read_region<int32_t>(out, L.seq, 2), (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(read_region<int64_t>(out, L.kv_slot, 2), (std::vector<int64_t>{1 * 4 + 2, 1 * 4 + 3}));
  EXPECT_EQ(read_region<int32_t>(out, L.tables, 1)[0], 6);
}

}  // namespace
