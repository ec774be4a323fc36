// Whole-model logits on the GPU against Hugging Face transformers: the
// goldens of tests/data/logits/*.json (tools/gen_logit_goldens.py: fp32
// transformers on the CPU, over the tiny checkpoint make-model writes with
// the golden's seed) for the three architectures, through the host
// dispatcher's captured graphs.
//
// The prompt runs one token per pass (16 decode-shaped passes over paged KV),
// so the head produces every prefill row's logits; then the golden's decode
// steps are fed the tokens transformers chose. The GPU computes in bf16
// (weights rounded from the fp32 checkpoint, bf16 activations, fp32
// accumulation), transformers in fp32: each row is compared relative to its
// largest logit, within 4% (bf16 rounding alone stays under 1%; a router
// near-tie that picks another expert on one row can cost a few percent, a
// wrong KV row, position or expert list costs far more), and the greedy token
// must agree wherever transformers' top two logits are further apart than the
// error allows.
#include "engine/cpu/sampling.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/host_backend.h"
#include "engine/model/checkpoint.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"
#include "tests/test_paths.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

using namespace qllm;

namespace {

constexpr double kRelTol = 4e-2;

nlohmann::json load_golden(const std::string& arch) {
  std::ifstream in(test::data_dir() / "logits" / (arch + ".json"));
  EXPECT_TRUE(in.good()) << "missing golden for " << arch;
  return nlohmann::json::parse(in);
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// Transformers' greedy token must be ours unless its top two are within the
// error we allow.
void expect_same_greedy(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
  std::vector<float> sorted = ref;
  std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
  double scale = 0;
  for (float x : ref) scale = std::max(scale, std::fabs(double(x)));
  if (double(sorted[0]) - double(sorted[1]) <= 2 * kRelTol * scale) return;  // a near tie
  EXPECT_EQ(sample_token(got, {}, 0), sample_token(ref, {}, 0)) << what << ": greedy choice differs";
}

class GpuHfGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuHfGolden, LogitsMatchTransformers) {
  QLLM_REQUIRE_GPU();
  const std::string arch = GetParam();
  const auto g = load_golden(arch);
  const Checkpoint ck = test::open_tiny(arch, g["seed"].get<uint64_t>(), "gpu-golden-" + arch, DType::F32);
  const int V = ck.desc().vocab;
  test::Stream st;
  const gpu::DeviceWeights w = gpu::DeviceWeights::upload(ck, st.get(), {.progress = false});
  gpu::HostBackendConfig cfg;
  cfg.slots = 1;
  cfg.max_tokens = 16;
  cfg.max_seqs = 4;
  cfg.kv_blocks = 16;
  cfg.block_size = 4;  // the prompt spans several blocks
  cfg.max_seq_len = 64;
  cfg.gemm_workspace_bytes = size_t(8) << 20;
  gpu::GpuHostBackend b(w, cfg);

  const std::vector<int32_t> table = {3, 0, 7, 1, 12, 5, 9, 2, 4, 6, 8, 10, 11, 13, 14, 15};  // not in order
  int pos = 0;
  auto step = [&](int32_t tok) {
    const cpu::SeqChunk c{std::span(&tok, 1), pos, table, true};
    const SampleSpec greedy{};
    b.begin(0, std::span(&c, 1), std::span(&greedy, 1));
    sched::SlotState s;
    sched::publish(s, PriorityClass::LS, 0);
    while (s.active) sched::advance(s, ck.desc().layers, b.run(0, s.cursor));
    ++pos;
    auto logits = b.logits(0);
    EXPECT_EQ(int(logits.size()), V);
    return logits;
  };

  const auto prompt = g["prompt"].get<std::vector<int32_t>>();
  const auto& rows = g["prefill_logits"];
  ASSERT_EQ(rows.size(), prompt.size());
  double worst = 0;
  for (size_t t = 0; t < prompt.size(); ++t) {
    const auto got = step(prompt[t]);
    const auto ref = rows[t].get<std::vector<float>>();
    const double e = rel_err(got, ref);
    worst = std::max(worst, e);
    EXPECT_LE(e, kRelTol) << arch << " prefill row " << t;
    expect_same_greedy(got, ref, arch + " prefill row " + std::to_string(t));
  }
  for (const auto& d : g["decode"]) {
    const int32_t tok = d["token"].get<int32_t>();
    const auto got = step(tok);
    const auto ref = d["logits"].get<std::vector<float>>();
    const double e = rel_err(got, ref);
    worst = std::max(worst, e);
    EXPECT_LE(e, kRelTol) << arch << " decode after token " << tok;
    expect_same_greedy(got, ref, arch + " decode after token " + std::to_string(tok));
  }
  std::printf("%s: largest relative logit difference against transformers %.4f over %d positions\n", arch.c_str(),
              worst, pos);
}

INSTANTIATE_TEST_SUITE_P(Archs, GpuHfGolden, ::testing::Values("mixtral", "qwen3_moe", "olmoe"));

}  // namespace
