#include "engine/cpu/sampling.h"

#include "engine/model/synthetic_init.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace qllm {

double sampling_uniform(uint64_t seed, uint64_t step) {
  const uint64_t h = synth::splitmix64(synth::splitmix64(seed ^ 0x5A4D504C45ull) + step);
  return double(h >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int32_t sample_token(std::span<const float> logits, const SamplingParams& p, uint64_t step) {
  const int64_t V = int64_t(logits.size());
  if (p.temperature <= 0.0 || p.top_k == 1) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (logits[size_t(i)] > logits[size_t(best)]) best = i;
    return int32_t(best);
  }
  // Candidates by descending logit (ties: lower id first).
  std::vector<int32_t> idx(size_t(V), 0);
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t k = p.top_k > 0 ? std::min<int64_t>(p.top_k, V) : V;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
  idx.resize(size_t(k));
  const double inv_t = 1.0 / p.temperature;
  const double m = logits[size_t(idx[0])];
  std::vector<double> prob(idx.size());
  double sum = 0;
  for (size_t i = 0; i < idx.size(); ++i) sum += prob[i] = std::exp((logits[size_t(idx[i])] - m) * inv_t);
  // Nucleus: the smallest prefix whose mass reaches top_p.
  size_t keep = idx.size();
  if (p.top_p < 1.0) {
    double c = 0;
    for (size_t i = 0; i < idx.size(); ++i) {
      c += prob[i] / sum;
      if (c >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += prob[i];
  const double u = sampling_uniform(p.seed, step) * kept;
  double c = 0;
  for (size_t i = 0; i < keep; ++i) {
    c += prob[i];
    if (u < c) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace qllm
