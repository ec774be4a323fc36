// The CPU reference forward pass against Hugging Face transformers
// (tests/data/logits/*.json, made by tools/gen_logit_goldens.py), plus the
// properties the scheduler relies on: chunked prefill equals one-shot prefill,
// and the units can be interleaved with another pass without changing a bit.
#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/cpu/reference_model.h"
#include "engine/cpu/sampling.h"
#include "engine/model/checkpoint.h"
#include "engine/model/make_model.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

using namespace qllm;

namespace {

nlohmann::json load_golden(const std::string& arch) {
  std::ifstream in(test::data_dir() / "logits" / (arch + ".json"));
  EXPECT_TRUE(in.good()) << "missing golden for " << arch;
  return nlohmann::json::parse(in);
}

// Writes the golden's checkpoint (same generator, same seed) and opens it.
Checkpoint make_ckpt(const std::string& arch, uint64_t seed, DType dt, bool fused,
                     const std::string& tag) {
  Progress::set_enabled(false);
  MakeModelOptions o;
  o.out_dir = test::temp_dir("refmodel-" + arch + "-" + tag);
  o.arch = arch;
  o.preset = "tiny";
  o.dtype = dt;
  o.seed = seed;
  o.fused_experts = fused;
  o.force = true;
  o.progress = false;
  make_model(o);
  CheckpointOptions co;
  co.progress = false;
  return Checkpoint::open(o.out_dir, co);
}

// max |a - b| / max |b| over one row.
double rel_err(const float* a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}

class HfGolden : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(HfGolden, LogitsMatchTransformers) {
  const auto& [arch, fused] = GetParam();
  const auto g = load_golden(arch);
  const auto ck = make_ckpt(arch, g["seed"].get<uint64_t>(), DType::F32, fused, fused ? "fused" : "split");
  const cpu::ReferenceModel model(ck);
  const auto prompt = g["prompt"].get<std::vector<int32_t>>();
  const int V = ck.desc().vocab;
  auto cache = model.new_cache(64);
  const auto logits = model.forward(cache, prompt, /*all_rows=*/true);
  const auto& rows = g["prefill_logits"];
  ASSERT_EQ(rows.size(), prompt.size());
  for (size_t t = 0; t < prompt.size(); ++t) {
    const auto ref = rows[t].get<std::vector<float>>();
    ASSERT_EQ(int(ref.size()), V);
    EXPECT_LE(rel_err(logits.data() + t * size_t(V), ref), 1e-4) << arch << " prefill row " << t;
  }
  // Decode steps, fed the tokens transformers chose.
  for (const auto& step : g["decode"]) {
    const int32_t tok = step["token"].get<int32_t>();
    const auto out = model.forward(cache, std::span(&tok, 1));
    const auto ref = step["logits"].get<std::vector<float>>();
    EXPECT_LE(rel_err(out.data(), ref), 1e-4) << arch << " decode after token " << tok;
    EXPECT_EQ(sample_token(out, {}, 0), sample_token(ref, {}, 0)) << "greedy choice differs";
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, HfGolden,
                         ::testing::Combine(::testing::Values("mixtral", "qwen3_moe", "olmoe"),
                                            ::testing::Bool()),
                         [](const auto& param_info) {
                           return std::get<0>(param_info.param) +
                                  (std::get<1>(param_info.param) ? "_fused" : "_per_expert");
                         });

TEST(ReferenceModel, ChunkedPrefillEqualsOneShot) {
  const auto ck = make_ckpt("qwen3_moe", 9, DType::BF16, false, "chunk");
  const cpu::ReferenceModel model(ck);
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46};
  auto a = model.new_cache(32), b = model.new_cache(32);
  const auto one = model.forward(a, prompt);
  std::vector<float> chunked;
  for (size_t i = 0; i < prompt.size(); i += 4)
    chunked = model.forward(b, std::span(prompt).subspan(i, std::min<size_t>(4, prompt.size() - i)));
  ASSERT_EQ(one.size(), chunked.size());
  double worst = 0;
  for (size_t i = 0; i < one.size(); ++i) worst = std::max(worst, double(std::fabs(one[i] - chunked[i])));
  EXPECT_LT(worst, 1e-4);
  // Every op works per token row in a fixed order: the caches agree exactly.
  EXPECT_EQ(a.kv.k, b.kv.k);
  EXPECT_EQ(a.kv.v, b.kv.v);
}

TEST(ReferenceModel, InterleavedUnitsAreBitIdentical) {
  // A pass preempted after every unit by another sequence's units produces
  // exactly the logits it produces alone: units share no mutable state.
  const auto ck = make_ckpt("mixtral", 5, DType::BF16, false, "interleave");
  const cpu::ReferenceModel model(ck);
  const std::vector<int32_t> be = {10, 20, 30, 40, 50, 60};
  const std::vector<int32_t> ls = {7, 8, 9};
  auto alone_cache = model.new_cache(16);
  const auto alone = model.forward(alone_cache, be);

  auto be_cache = model.new_cache(16), ls_cache = model.new_cache(16);
  auto p = model.begin(be_cache, std::span(be));
  auto q = model.begin(ls_cache, std::span(ls));
  const int L = ck.desc().layers;
  for (int l = 0; l < L; ++l) {
    model.attn_unit(p, be_cache.kv, l);
    model.attn_unit(q, ls_cache.kv, l);  // LS work lands between BE units
    bool ls_experts_done = false;
    for (int e : model.active_experts(p)) {
      model.expert_unit(p, l, e);
      if (!ls_experts_done)  // LS experts land between two BE experts
        for (int f : model.active_experts(q)) model.expert_unit(q, l, f);
      ls_experts_done = true;
    }
  }
  model.head_unit(p);
  ASSERT_EQ(p.logits.size(), alone.size());
  EXPECT_EQ(0, std::memcmp(p.logits.data(), alone.data(), alone.size() * sizeof(float)));
}

TEST(ReferenceModel, BatchedPagedPassEqualsEachSequenceAlone) {
  // Continuous batching: a prefill chunk and decode tokens of other sequences
  // in one pass, KV in scattered blocks of 4, give each sequence bit for bit
  // the logits it gets alone with a contiguous cache.
  const auto ck = make_ckpt("qwen3_moe", 21, DType::BF16, false, "batch");
  const cpu::ReferenceModel model(ck);
  const std::vector<int32_t> a = {11, 12, 13, 14, 15, 16, 17};
  const std::vector<int32_t> b = {21, 22, 23};
  const std::vector<int32_t> c = {31, 32, 33, 34, 35};
  auto alone = [&](const std::vector<int32_t>& prompt, int32_t next) {
    auto cache = model.new_cache(16);
    const auto first = model.forward(cache, prompt);
    const auto second = model.forward(cache, std::span(&next, 1));
    return std::make_pair(first, second);
  };
  const auto ra = alone(a, 5), rb = alone(b, 6), rc = alone(c, 7);

  auto kv = model.new_paged_kv(16, 4);
  const std::vector<int32_t> ta = {9, 2}, tb = {7}, tc = {0, 14};  // scattered blocks
  // Pass 1: prefill a and b, and the first 3 tokens of c (no logits yet).
  const cpu::SeqChunk pass1[] = {{a, 0, ta, true}, {b, 0, tb, true},
                                 {std::span(c).first(3), 0, tc, false}};
  const auto l1 = model.forward(kv, pass1);
  // Pass 2: decode a and b, and the rest of c's prompt.
  const int32_t na = 5, nb = 6;
  const cpu::SeqChunk pass2[] = {{std::span(&na, 1), 7, ta, true},
                                 {std::span(c).subspan(3), 3, tc, true},
                                 {std::span(&nb, 1), 3, tb, true}};
  const auto l2 = model.forward(kv, pass2);
  const int32_t nc = 7;
  const cpu::SeqChunk pass3[] = {{std::span(&nc, 1), 5, tc, true}};
  const auto l3 = model.forward(kv, pass3);

  const size_t V = size_t(ck.desc().vocab);
  auto row = [&](const std::vector<float>& l, size_t r) { return std::vector<float>(l.begin() + long(r * V), l.begin() + long((r + 1) * V)); };
  EXPECT_EQ(row(l1, 0), ra.first);
  EXPECT_EQ(row(l1, 1), rb.first);
  EXPECT_EQ(l1.size(), 2 * V);  // c asked for no logits
  EXPECT_EQ(row(l2, 0), ra.second);
  EXPECT_EQ(row(l2, 1), rc.first);
  EXPECT_EQ(row(l2, 2), rb.second);
  EXPECT_EQ(row(l3, 0), rc.second);
}

TEST(ReferenceModel, RejectsBadBlockTables) {
  const auto ck = make_ckpt("mixtral", 2, DType::BF16, false, "tables");
  const cpu::ReferenceModel model(ck);
  auto kv = model.new_paged_kv(4, 4);
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  const std::vector<int32_t> short_table = {0};
  const cpu::SeqChunk uncovered[] = {{toks, 0, short_table, true}};
  EXPECT_THROW(model.forward(kv, uncovered), Error);
  const std::vector<int32_t> bad_block = {0, 9};
  const cpu::SeqChunk outside[] = {{toks, 0, bad_block, true}};
  EXPECT_THROW(model.forward(kv, outside), Error);
}

TEST(ReferenceModel, RejectsBadTokensAndOverflow) {
  const auto ck = make_ckpt("olmoe", 3, DType::BF16, false, "bad");
  const cpu::ReferenceModel model(ck);
  auto cache = model.new_cache(4);
  const std::vector<int32_t> bad = {ck.desc().vocab};
  EXPECT_THROW(model.forward(cache, bad), Error);
  const std::vector<int32_t> many = {1, 2, 3, 4, 5};
  auto small = model.new_cache(4);
  EXPECT_THROW(model.forward(small, many), Error);
}

}  // namespace
