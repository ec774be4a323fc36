// The fixture of the device dispatcher's end-to-end GPU tests
// (gpu_device_backend_workload_test, gpu_device_backend_stop_test): the
// engine (engine/core/engine.h) over GpuDeviceBackend, the scheduler loop on
// the GPU launching the host dispatcher's unit graphs by device graph
// launch, LoopBackend as its host half. The CPU twin of these tests is
// tests/cpu/core_loop_backend_test.cpp (the same loop code in a host thread
// over the reference model).
//
//   open_tiny()    a tiny checkpoint of an architecture (tests/tiny_model.h)
//   limits(), backend_config()   two slots (0: LS, 1: BE), 64 tokens and 8
//                  sequences per step, 256 KV blocks of 8 tokens
//   Weights        a tiny checkpoint's weights on the GPU
//   DeviceRig      the device dispatcher, a PassRecorder over it and an
//                  engine on a real-time clock
//   req()          a request with a random prompt, greedy or seeded sampling
//   Driven         what the engine reported, by request
//   step_until()   steps the engine until a condition holds or a deadline
//   policy_name(), seconds_since()
#pragma once

#include "engine/core/engine.h"
#include "engine/gpu/device_backend.h"
#include "engine/gpu/host_backend.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu/tiny_gpu_limits.h"
#include "tests/pass_recorder.h"
#include "tests/tiny_model.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace qllm::test::devbackend {

using Steady = std::chrono::steady_clock;
using sched::UnitKind;

constexpr int kLsSlot = 0, kBeSlot = 1;  // limits(): one LS slot, then one BE slot

inline double seconds_since(Steady::time_point t0) { return std::chrono::duration<double>(Steady::now() - t0).count(); }

inline const char* policy_name(sched::Policy p) {
  switch (p) {
    case sched::Policy::FcfsIteration: return "fcfs-iteration";
    case sched::Policy::PriorityLayer: return "priority-layer";
    case sched::Policy::PriorityExpert: return "priority-expert";
  }
  return "?";
}

inline Checkpoint open_tiny(const std::string& arch, uint64_t seed) {
  return qllm::test::open_tiny(arch, seed, "devbackend-" + arch);
}

inline EngineLimits limits(sched::Policy p) { return tiny_gpu_limits(p); }
inline gpu::HostBackendConfig backend_config(const EngineLimits& l) { return tiny_gpu_backend_config(l); }

// A tiny checkpoint's weights on the GPU (they outlive every backend built on them).
struct Weights {
  Checkpoint ck;
  Stream st;
  gpu::DeviceWeights w;
  explicit Weights(Checkpoint c)
      : ck(std::move(c)), w(gpu::DeviceWeights::upload(ck, st.get(), {.progress = false})) {}
  int vocab() const { return ck.desc().vocab; }
};

// The device dispatcher, the recorder over it and an engine on a real-time
// clock. `clock_delay_s`: how long after the backend's start-up (and its
// self-test, whose collects ran on another clock) the engine's clock starts.
struct DeviceRig {
  std::unique_ptr<gpu::GpuDeviceBackend> dev;
  std::unique_ptr<PassRecorder> rec;
  std::unique_ptr<RealTimeClock> clock;
  std::unique_ptr<Engine> engine;

  DeviceRig(const gpu::DeviceWeights& w, const EngineLimits& lim, double clock_delay_s = 0) {
    dev = std::make_unique<gpu::GpuDeviceBackend>(w, backend_config(lim), gpu::DeviceBackendOptions::from(lim));
    rec = std::make_unique<PassRecorder>(*dev);
    if (clock_delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(clock_delay_s));
    clock = std::make_unique<RealTimeClock>();
    engine = std::make_unique<Engine>(*rec, lim, *clock);
  }
  ~DeviceRig() {  // the engine first, the backend (which stops the loop) last
    engine.reset();
    rec.reset();
    dev.reset();
  }
};

// What the engine reported, by request.
struct Driven {
  std::map<uint64_t, std::vector<int32_t>> tokens;
  std::map<uint64_t, Finish> finish;
  bool in_time = true;

  void take(const std::vector<TokenEvent>& ev) {
    for (const auto& e : ev) {
      if (e.token >= 0) tokens[e.id].push_back(e.token);
      if (e.finish != Finish::None) finish[e.id] = e.finish;
    }
  }
  bool ended(uint64_t id) const { return finish.count(id) > 0; }
};

// Steps the engine until done() or `limit_s` of wall time; false on the deadline.
template <class Done>
bool step_until(Engine& e, Driven& d, double limit_s, Done done) {
  std::vector<TokenEvent> ev;
  const auto t0 = Steady::now();
  while (!done()) {
    if (seconds_since(t0) > limit_s) return false;
    ev.clear();
    e.step(ev);
    d.take(ev);
  }
  return true;
}

}  // namespace qllm::test::devbackend
