// Prompt and output lengths: fixed, uniform, and ShareGPT (the real length
// table when present, otherwise a log-normal fitted to it), with the caps of
// BENCH.md (prompt <= max_prompt, prompt + output <= max_total).
#pragma once

#include "engine/workload/rng.h"
#include "engine/workload/workload_spec.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace qllm::workload {

struct LengthPair {
  int64_t prompt = 0;
  int64_t output = 0;
  bool operator==(const LengthPair&) const = default;
};

// The ShareGPT length table, relative to the traces folder.
inline constexpr const char* kShareGptCsv =
    "sharegpt_lengths/sharegpt_8k_filtered_stats_llama2_tokenizer.csv";

// (prompt, output) rows of a ShareGPT length CSV (columns num_prefill_tokens,
// num_decode_tokens, ...). Throws qllm::Error naming the file and line.
std::vector<LengthPair> load_sharegpt_csv(const std::filesystem::path& path);

// Bivariate log-normal fitted to the ShareGPT table; see length_dist.cpp for
// where each number comes from.
struct ShareGptFit {
  double mu_prompt;     // mean of ln(prompt tokens)
  double sigma_prompt;  // standard deviation of ln(prompt tokens)
  double mu_output;     // ln(median output tokens)
  double sigma_output;  // ln(p90 / median) / z(0.9)
  double rho;           // correlation of ln(prompt) and ln(output)
  int64_t max_output;   // the table caps outputs at this
};
extern const ShareGptFit kShareGptFit;

// One draw from the fitted distribution, before any caps (prompt >= 1,
// 1 <= output <= max_output).
LengthPair sample_sharegpt_fitted(Rng& rng);

// Draws (prompt, output) pairs for one class. Pairs breaking a cap are drawn
// again, as vLLM's benchmark filters ShareGPT; fixed and uniform ranges are
// checked for feasibility by validate(). `sharegpt_rows` may be null: ShareGPT
// draws then come from the fitted log-normal.
class LengthSampler {
 public:
  LengthSampler(const LengthDist& prompt, const LengthDist& output, int64_t max_prompt,
                int64_t max_total, const std::vector<LengthPair>* sharegpt_rows);

  LengthPair sample(Rng& rng) const;

 private:
  LengthPair draw(Rng& rng) const;

  LengthDist prompt_;
  LengthDist output_;
  int64_t max_prompt_;
  int64_t max_total_;
  const std::vector<LengthPair>* rows_;
};

// Clamps a trace's (prompt, output) to the caps: prompt to max_prompt, then
// output to max_total - prompt (both at least 1).
LengthPair clamp_to_caps(LengthPair p, int64_t max_prompt, int64_t max_total);

}  // namespace qllm::workload
