#include "engine/workload/length_dist.h"

#include "engine/common/error.h"
#include "engine/workload/text_fields.h"

#include <algorithm>
#include <cmath>
#include <fstream>

namespace qllm::workload {

// Fitted to sharegpt_lengths/sharegpt_8k_filtered_stats_llama2_tokenizer.csv
// (sarathi-serve; 30,731 rows, Llama-2 token counts, total <= ~8 K, outputs
// capped at 1,024). File statistics: prompt mean 2,340.0, median 1,730, p90
// 5,696, min 1; output mean 438.7, median 415, p90 834, min 2, max 1,024.
//  * Prompt: maximum-likelihood log-normal, i.e. the mean (7.006509) and the
//    population standard deviation (1.625734) of ln(num_prefill_tokens). It
//    keeps the file's heavy share of short prompts, which are the ones that
//    survive the 1,024-token cap: after the default caps the fit gives prompt
//    mean 404 / median 350 / p90 839 against the file's 378 / 297 / 878.
//  * Output: matched to the median and p90 (mu = ln 415, sigma = ln(834 / 415)
//    / 1.2816), because the outputs are close to symmetric in linear scale and
//    the ML fit of ln(output) puts the median at 320 instead of 415. After the
//    caps: mean 455 / median 403 / p90 807 against the file's 415 / 399 / 816.
//  * rho: the Pearson correlation of ln(prompt) and ln(output) in the file.
//  * The file keeps 36 % of its rows within the default caps, the fit 48 %.
const ShareGptFit kShareGptFit = {
    /*mu_prompt=*/7.006509,
    /*sigma_prompt=*/1.625734,
    /*mu_output=*/6.028279,
    /*sigma_output=*/0.544617,
    /*rho=*/0.062383,
    /*max_output=*/1024,
};

std::vector<LengthPair> load_sharegpt_csv(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open ShareGPT length file", path.string());
  std::string line;
  if (!std::getline(in, line)) fail("{}:1: empty file (expected a CSV header)", path.string());
  const auto header = detail::split_csv(line);
  const auto column = [&](std::string_view name) -> size_t {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end())
      fail("{}:1: missing column '{}' (header: {})", path.string(), name, line);
    return size_t(it - header.begin());
  };
  const size_t cp = column("num_prefill_tokens");
  const size_t co = column("num_decode_tokens");
  std::vector<LengthPair> rows;
  for (int64_t n = 2; std::getline(in, line); ++n) {
    if (line.empty() || line == "\r") continue;
    const std::string where = fmt::format("{}:{}", path.string(), n);
    const auto f = detail::split_csv(line);
    if (f.size() != header.size())
      fail("{}: expected {} fields, got {}", where, header.size(), f.size());
    LengthPair p{detail::parse_count(f[cp], where, "num_prefill_tokens"),
                 detail::parse_count(f[co], where, "num_decode_tokens")};
    if (p.prompt < 1 || p.output < 1)
      fail("{}: token counts must be at least 1 (got {}, {})", where, p.prompt, p.output);
    rows.push_back(p);
  }
  if (rows.empty()) fail("{}: no rows", path.string());
  return rows;
}

LengthPair sample_sharegpt_fitted(Rng& rng) {
  const ShareGptFit& f = kShareGptFit;
  const double z1 = rng.normal();
  const double z2 = rng.normal();
  const double zo = f.rho * z1 + std::sqrt(1.0 - f.rho * f.rho) * z2;
  // Clamp in log space first so a far tail cannot overflow the conversion.
  const double lp = std::min(f.mu_prompt + f.sigma_prompt * z1, 40.0);
  const double lo = std::min(f.mu_output + f.sigma_output * zo, 40.0);
  LengthPair p;
  p.prompt = std::max<int64_t>(1, std::llround(std::exp(lp)));
  p.output = std::clamp<int64_t>(std::llround(std::exp(lo)), 1, f.max_output);
  return p;
}

LengthSampler::LengthSampler(const LengthDist& prompt, const LengthDist& output, int64_t max_prompt,
                             int64_t max_total, const std::vector<LengthPair>* sharegpt_rows)
    : prompt_(prompt),
      output_(output),
      max_prompt_(max_prompt),
      max_total_(max_total),
      rows_(sharegpt_rows) {
  QLLM_CHECK(prompt_.kind != LengthDist::Kind::Inherit);
  QLLM_CHECK(output_.kind != LengthDist::Kind::Inherit);
  QLLM_CHECK(!rows_ || !rows_->empty());
}

LengthPair LengthSampler::draw(Rng& rng) const {
  using K = LengthDist::Kind;
  LengthPair shared;
  if (prompt_.kind == K::ShareGPT || output_.kind == K::ShareGPT) {
    shared = rows_ ? (*rows_)[size_t(rng.uniform_int(0, int64_t(rows_->size()) - 1))]
                   : sample_sharegpt_fitted(rng);
  }
  auto one = [&](const LengthDist& d, int64_t from_pair) -> int64_t {
    switch (d.kind) {
      case K::Fixed: return d.min;
      case K::Uniform: return rng.uniform_int(d.min, d.max);
      case K::ShareGPT: return from_pair;
      case K::Inherit: break;
    }
    QLLM_CHECK_MSG(false, "length distribution not resolved");
    return 0;
  };
  LengthPair p;
  p.prompt = one(prompt_, shared.prompt);
  p.output = one(output_, shared.output);
  return p;
}

LengthPair LengthSampler::sample(Rng& rng) const {
  constexpr int kMaxDraws = 1'000'000;
  for (int i = 0; i < kMaxDraws; ++i) {
    const LengthPair p = draw(rng);
    if (p.prompt <= max_prompt_ && p.prompt + p.output <= max_total_) return p;
  }
  fail(
      "lengths: no draw of prompt {} / output {} fitted max_prompt {} and max_total {} in {} "
      "tries; loosen the caps",
      to_string(prompt_), to_string(output_), max_prompt_, max_total_, kMaxDraws);
}

LengthPair clamp_to_caps(LengthPair p, int64_t max_prompt, int64_t max_total) {
  p.prompt = std::clamp<int64_t>(p.prompt, 1, max_prompt);
  p.output = std::clamp<int64_t>(p.output, 1, std::max<int64_t>(1, max_total - p.prompt));
  return p;
}

}  // namespace qllm::workload
