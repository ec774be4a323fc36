// Helpers for tests that need a model or drive an engine: a seeded tiny
// checkpoint written by make-model into a temporary folder, and a loop that
// submits requests at their arrival times and steps an engine to the end.
#pragma once

#include "engine/common/progress.h"
#include "engine/core/engine.h"
#include "engine/model/checkpoint.h"
#include "engine/model/make_model.h"
#include "tests/test_paths.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qllm::test {

// Writes the `tiny` preset of `arch` with `seed` (and weights of `dtype`)
// into a fresh temporary folder named after `name` and returns the folder.
inline std::filesystem::path make_tiny(const std::string& arch, uint64_t seed, const std::string& name,
                                       DType dtype = MakeModelOptions{}.dtype) {
  Progress::set_enabled(false);
  MakeModelOptions o;
  o.out_dir = temp_dir(name);
  o.arch = arch;
  o.force = true;
  o.progress = false;
  o.seed = seed;
  o.dtype = dtype;
  make_model(o);
  return o.out_dir;
}

inline Checkpoint open_tiny(const std::string& arch, uint64_t seed, const std::string& name,
                            DType dtype = MakeModelOptions{}.dtype) {
  CheckpointOptions co;
  co.progress = false;
  return Checkpoint::open(make_tiny(arch, seed, name, dtype), co);
}

// Submits each request at its arrival time (the clock idles until the next
// one when nothing runs) and steps the engine until every request is done.
// Returns each request's tokens.
inline std::map<uint64_t, std::vector<int32_t>> drive(Engine& e, Clock& clock, std::vector<Request> reqs) {
  std::sort(reqs.begin(), reqs.end(), [](const Request& a, const Request& b) { return a.arrival_s < b.arrival_s; });
  std::map<uint64_t, std::vector<int32_t>> got;
  std::vector<TokenEvent> ev;
  size_t next = 0;
  for (int guard = 0; guard < 1000000; ++guard) {
    while (next < reqs.size() && reqs[next].arrival_s <= clock.now()) e.submit(reqs[next++]);
    ev.clear();
    const bool ran = e.step(ev);
    for (const auto& x : ev)
      if (x.token >= 0) got[x.id].push_back(x.token);
    if (!ran) {
      if (next == reqs.size()) break;
      clock.idle_until(reqs[next].arrival_s);
    }
  }
  return got;
}

}  // namespace qllm::test
