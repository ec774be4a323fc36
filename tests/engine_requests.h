// Requests and reference outputs for engine tests: a cached tiny model per
// architecture (its checkpoint and CPU reference model), a request builder,
// a seeded random mix of LS and BE requests, and the tokens a request gets
// when decoded alone (one forward per token, the reference every batched
// run must reproduce).
#pragma once

#include "engine/core/request.h"
#include "engine/cpu/reference_model.h"
#include "engine/cpu/sampling.h"
#include "tests/tiny_model.h"

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace qllm::test {

struct Fixture {
  Checkpoint ck;
  cpu::ReferenceModel model;
};

inline const Fixture& tiny(const std::string& arch) {
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  auto& f = cache[arch];
  if (!f) {
    auto ck = test::open_tiny(arch, 11, "engine-" + arch);
    auto model = cpu::ReferenceModel(ck);
    f = std::make_unique<Fixture>(Fixture{std::move(ck), std::move(model)});
  }
  return *f;
}

// The tokens a request gets decoded alone, one forward per token.
inline std::vector<int32_t> alone(const cpu::ReferenceModel& m, const Request& r) {
  auto cache = m.new_cache(int(r.prompt.size()) + r.max_tokens);
  auto logits = m.forward(cache, r.prompt);
  std::vector<int32_t> out;
  for (int i = 0; i < r.max_tokens; ++i) {
    const int32_t t = sample_token(logits, r.sampling, uint64_t(i));
    if (std::find(r.stop_ids.begin(), r.stop_ids.end(), t) != r.stop_ids.end()) break;
    out.push_back(t);
    if (i + 1 < r.max_tokens) logits = m.forward(cache, std::span(&t, 1));
  }
  return out;
}

inline Request req(uint64_t id, PriorityClass cls, std::vector<int32_t> prompt, int max_tokens, double at,
            double temperature = 0) {
  Request r;
  r.id = id;
  r.cls = cls;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.arrival_s = at;
  r.sampling.temperature = temperature;
  r.sampling.top_k = temperature > 0 ? 20 : 0;
  r.sampling.seed = id * 7 + 1;
  return r;
}

inline std::vector<Request> random_mix(int n, int vocab, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<Request> out;
  double t = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(size_t(1 + rng() % 40));
    for (auto& x : p) x = int32_t(rng() % uint32_t(vocab));
    t += double(rng() % 20) * 1e-3;
    out.push_back(req(uint64_t(i + 1), rng() % 5 == 0 ? PriorityClass::LS : PriorityClass::BE, p,
                      int(1 + rng() % 12), t, (i % 2) ? 0.9 : 0.0));
  }
  return out;
}

}  // namespace qllm::test
