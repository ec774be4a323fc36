// The device dispatcher on the CPU, wired up for tests: the engine over
// LoopBackend over the simulated device (tests/sim_device.h: the scheduler
// loop in a host thread over the reference model), with a PassRecorder
// between them, in real time; small engine limits; tokens per request.
#pragma once

#include "engine/core/engine.h"
#include "engine/core/loop_backend.h"
#include "tests/pass_recorder.h"
#include "tests/sim_device.h"

#include <chrono>
#include <map>
#include <vector>

namespace qllm::test {

inline EngineLimits small_limits(sched::Policy p) {
  EngineLimits lim;
  lim.policy = p;
  lim.max_tokens_per_step = 48;
  lim.prefill_chunk = 16;
  lim.max_seqs_per_step = 6;
  lim.kv_blocks = 64;
  lim.block_size = 8;
  return lim;
}

// The engine, the simulated device and the loop's host half, wired up (the
// recorder keeps every pass the engine published and its result).
struct LoopRig {
  test::SimDevice dev;
  LoopBackend backend;
  test::PassRecorder recorder;
  RealTimeClock clock;
  Engine engine;

  LoopRig(const cpu::ReferenceModel& m, const EngineLimits& lim, test::SimDeviceOptions opt = {})
      : dev(m, lim, opt), backend(m.desc(), dev.control_block(), dev), recorder(backend),
        engine(recorder, lim, clock) {}

  // Steps until `done` says so (or a 20 s deadline); returns the events.
  template <class Done>
  std::vector<TokenEvent> step_until(Done done) {
    std::vector<TokenEvent> all, ev;
    const auto t0 = std::chrono::steady_clock::now();
    while (!done(all) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
      ev.clear();
      engine.step(ev);
      all.insert(all.end(), ev.begin(), ev.end());
    }
    return all;
  }
};

inline std::map<uint64_t, std::vector<int32_t>> tokens_of(const std::vector<TokenEvent>& ev) {
  std::map<uint64_t, std::vector<int32_t>> got;
  for (const auto& e : ev)
    if (e.token >= 0) got[e.id].push_back(e.token);
  return got;
}

}  // namespace qllm::test
