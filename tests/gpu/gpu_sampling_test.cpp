// kernels/sampling against engine/cpu/sampling.h sample_token on the same
// logits: every active row must get exactly the CPU's token.
//   * greedy (temperature 0, top_k 1), temperatures from 0.05 to 20, top_k
//     off / 1 / small / large / past the vocabulary, top_p off / 0.9 / 0.5 /
//     0 (one candidate), many seeds and steps;
//   * vocabularies of 7, 1000, 32000, 50257 (not a multiple of 4) and 151936
//     (Qwen3), a row stride wider than the vocabulary;
//   * logits that are peaked, flat (every one of 150k candidates counts),
//     quantised to a few values (ties everywhere, at the top-k boundary too),
//     -inf masks, +0 / -0 ties;
//   * fewer blocks than rows (each block takes several rows); rows past the
//     count keep their poison;
//   * one captured device-launch graph replayed with new logits, parameters
//     and counts.
#include "engine/cpu/sampling.h"
#include "kernels/sampling.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <cmath>
#include <limits>
#include <string>

using namespace qllm;
using namespace qllm::test;

namespace {

enum class Dist { Peaked, Flat, Quantised, Masked, SignedZeros, Llm };

// n logits of a row, drawn from `dist`.
std::vector<float> make_row(Dist dist, int V, Rng& rng) {
  std::vector<float> row(static_cast<size_t>(V));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  switch (dist) {
    case Dist::Peaked:
      for (auto& x : row) x = 4.0f * normal(rng.engine());
      break;
    case Dist::Flat:
      for (auto& x : row) x = rng.uniform(-0.02f, 0.02f);
      break;
    case Dist::Quantised:  // a handful of values: ties everywhere
      for (auto& x : row) x = 0.5f * float(rng.integer(-6, 3));
      break;
    case Dist::Masked:
      for (auto& x : row) x = rng.integer(0, 3) == 0 ? -std::numeric_limits<float>::infinity() : 2.0f * normal(rng.engine());
      row[size_t(rng.integer(0, V - 1))] = 1.0f;  // at least one finite
      break;
    case Dist::SignedZeros:
      for (auto& x : row) x = rng.integer(0, 3) == 0 ? (rng.coin() ? 0.0f : -0.0f) : -1.0f - rng.uniform(0.0f, 1.0f);
      break;
    case Dist::Llm: {
      // Bulk around -5 with a long upper tail, a few strong candidates.
      for (auto& x : row) x = -5.0f + 2.5f * normal(rng.engine());
      for (int i = 0; i < 8; ++i) row[size_t(rng.integer(0, V - 1))] = 12.0f + 3.0f * normal(rng.engine());
      break;
    }
  }
  return row;
}

cuda::SamplingRow random_params(Rng& rng, int V) {
  static const double temps[] = {0.0, 0.05, 0.3, 0.7, 1.0, 1.0, 1.5, 4.0, 20.0};
  static const double top_ps[] = {1.0, 1.0, 0.95, 0.9, 0.5, 0.0};
  const int top_ks[] = {0, 0, 1, 2, 5, 50, 1000, V - 1, V, V + 10};
  cuda::SamplingRow p;
  p.temperature = temps[rng.integer(0, std::size(temps) - 1)];
  p.top_p = top_ps[rng.integer(0, std::size(top_ps) - 1)];
  p.top_k = top_ks[rng.integer(0, std::size(top_ks) - 1)];
  p.seed = rng.engine()();
  p.step = uint64_t(rng.integer(0, 5000));
  return p;
}

struct Sampler {
  int V, ld, cap, blocks;
  DeviceBuffer<float> logits;
  DeviceBuffer<cuda::SamplingRow> params;
  DeviceBuffer<int32_t> tokens, rows = device_int(0);
  DeviceBuffer<uint8_t> ws;

  Sampler(int V_, int ld_, int cap_, int blocks_)
      : V(V_), ld(ld_), cap(cap_), blocks(blocks_), logits(size_t(cap_) * size_t(ld_)), params(size_t(cap_)),
        tokens(size_t(cap_)), ws(cuda::sampling_workspace_bytes(V_, blocks_)) {}

  void launch(cudaStream_t stream) {
    cuda::sample_tokens(logits.get(), ld, V, params.get(), rows.get(), cap, tokens.get(), ws.get(), ws.bytes(),
                        blocks, stream);
  }
};

// Host inputs of one launch.
struct Batch {
  int n = 0;
  std::vector<float> logits;  // [cap, ld]
  std::vector<cuda::SamplingRow> params;
};

Batch make_batch(const Sampler& s, int n, Rng& rng, const std::vector<Dist>& dists) {
  Batch b;
  b.n = n;
  b.logits.assign(size_t(s.cap) * size_t(s.ld), std::numeric_limits<float>::quiet_NaN());  // padding columns
  b.params.resize(size_t(s.cap));
  for (int r = 0; r < s.cap; ++r) {
    const auto row = make_row(dists[size_t(r) % dists.size()], s.V, rng);
    std::copy(row.begin(), row.end(), b.logits.begin() + std::ptrdiff_t(r) * s.ld);
    b.params[size_t(r)] = random_params(rng, s.V);
  }
  return b;
}

void upload(Sampler& s, const Batch& b) {
  s.logits.upload(b.logits);
  s.params.upload(b.params);
  write_int(s.rows, b.n);
  s.tokens.poison();
  s.ws.poison();
}

// Every active row's token equals the CPU sampler's; the others keep poison.
void check(const Sampler& s, const Batch& b, const std::string& what) {
  const auto got = s.tokens.download();
  int bad = 0;
  for (int r = 0; r < s.cap; ++r) {
    const auto& p = b.params[size_t(r)];
    if (r >= b.n) {
      EXPECT_EQ(got[size_t(r)], poison_value<int32_t>()) << what << ": row " << r << " past the count was written";
      continue;
    }
    const SamplingParams cp{p.temperature, p.top_p, p.top_k, p.seed};
    const int32_t want =
        sample_token(std::span<const float>(b.logits.data() + size_t(r) * size_t(s.ld), size_t(s.V)), cp, p.step);
    if (got[size_t(r)] != want && bad++ < 8)
      ADD_FAILURE() << what << ": row " << r << " (temperature " << p.temperature << ", top_k " << p.top_k
                    << ", top_p " << p.top_p << ", seed " << p.seed << ", step " << p.step << "): token "
                    << got[size_t(r)] << ", CPU " << want;
  }
  EXPECT_EQ(bad, 0) << what << ": rows with a different token";
}

void run(int V, int ld, int cap, int n, int blocks, const std::vector<Dist>& dists, uint64_t seed,
         const std::string& what) {
  SCOPED_TRACE(what + ": vocab " + std::to_string(V) + ", rows " + std::to_string(n) + " of " +
               std::to_string(cap) + ", blocks " + std::to_string(blocks));
  Rng rng(seed);
  Sampler s(V, ld, cap, blocks);
  const Batch b = make_batch(s, n, rng, dists);
  upload(s, b);
  s.launch(nullptr);
  check(s, b, what);
}

const std::vector<Dist> kAll{Dist::Peaked, Dist::Flat, Dist::Quantised, Dist::Masked, Dist::SignedZeros, Dist::Llm};

TEST(GpuSampling, SmallVocabularies) {
  QLLM_REQUIRE_GPU();
  run(7, 7, 40, 37, 40, kAll, 1, "vocab 7");
  run(1000, 1000, 64, 60, 16, kAll, 2, "vocab 1000");
  run(1000, 1004, 64, 64, 64, kAll, 3, "vocab 1000, wider rows");
}

TEST(GpuSampling, ModelVocabularies) {
  QLLM_REQUIRE_GPU();
  run(32000, 32000, 48, 45, 12, kAll, 10, "Mixtral vocab");
  run(50257, 50257, 24, 24, 24, kAll, 11, "odd vocab");
  run(151936, 151936, 24, 20, 8, kAll, 12, "Qwen3 vocab");
}

TEST(GpuSampling, FlatLogitsOverTheWholeVocabulary) {
  QLLM_REQUIRE_GPU();
  // Every candidate counts in the sums: the longest sort and running sums.
  Rng rng(20);
  Sampler s(151936, 151936, 12, 12);
  Batch b = make_batch(s, 12, rng, {Dist::Flat});
  for (int r = 0; r < 12; ++r) {
    auto& p = b.params[size_t(r)];
    p.temperature = r % 3 == 0 ? 1.0 : 20.0;
    p.top_k = r % 4 == 0 ? 100000 : 0;
    p.top_p = r % 2 == 0 ? 1.0 : 0.7;
  }
  upload(s, b);
  s.launch(nullptr);
  check(s, b, "flat");
}

TEST(GpuSampling, TiesAtTheTopKBoundary) {
  QLLM_REQUIRE_GPU();
  Rng rng(30);
  Sampler s(5000, 5000, 32, 8);
  Batch b = make_batch(s, 32, rng, {Dist::Quantised});
  for (int r = 0; r < 32; ++r) {
    auto& p = b.params[size_t(r)];
    p.temperature = 2.0;
    p.top_p = r % 2 ? 1.0 : 0.8;
    p.top_k = 1 + int(rng.integer(0, 2000));  // lands inside a group of equal logits
  }
  upload(s, b);
  s.launch(nullptr);
  check(s, b, "ties at k");
}

TEST(GpuSampling, ManyDrawsOfOneRow) {
  QLLM_REQUIRE_GPU();
  // The same logits at many steps: the draw walks the whole distribution.
  Rng rng(40);
  const int cap = 256;
  Sampler s(2000, 2000, cap, 64);
  Batch b = make_batch(s, cap, rng, {Dist::Peaked});
  const auto row = make_row(Dist::Llm, 2000, rng);
  for (int r = 0; r < cap; ++r) {
    std::copy(row.begin(), row.end(), b.logits.begin() + std::ptrdiff_t(r) * 2000);
    auto& p = b.params[size_t(r)];
    p.temperature = 1.0;
    p.top_k = 0;
    p.top_p = r % 2 ? 1.0 : 0.9;
    p.seed = 7;
    p.step = uint64_t(r);
  }
  upload(s, b);
  s.launch(nullptr);
  check(s, b, "one row, 256 steps");
}

TEST(GpuSampling, OneGraphServesStepsWithNewLogitsParamsAndCounts) {
  QLLM_REQUIRE_GPU();
  Rng rng(50);
  Sampler s(32000, 32000, 16, 4);
  Stream stream;
  CapturedGraph graph(stream.get(), [&](cudaStream_t st) { s.launch(st); });
  for (int n : {16, 3, 0, 16, 9}) {
    SCOPED_TRACE("replay with " + std::to_string(n) + " rows");
    const Batch b = make_batch(s, n, rng, kAll);
    upload(s, b);
    graph.replay(stream.get());
    check(s, b, "graph");
  }
}

}  // namespace
