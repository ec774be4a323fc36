// A simulated device for the device dispatcher's host half (LoopBackend):
// the scheduler loop (device_scheduler/loop.h, the code the GPU runs) in a
// host thread, over an executor that runs the CPU reference model's units,
// with a control block in ordinary memory. So the whole device dispatcher -
// engine, control block, policy on the "device", output ring, timings -
// runs and is checked on a machine without a GPU.
//
//   test::SimDevice dev(model, limits, {});  // starts the loop thread
//   LoopBackend b(model.desc(), dev.control_block(), dev);
//   Engine e(b, limits, clock);              // clock: RealTimeClock or WallClock
//   ...
//   b.shutdown(5.0, results, clock);          // the loop acknowledges and exits
//
// Knobs for tests: a pause per unit (so a pass is long enough to be
// overtaken), a one-shot bad expert count or kernel error word at a given
// layer, and the loop's state after it exited.
#pragma once

#include "device_scheduler/loop.h"
#include "engine/core/cpu_engine.h"
#include "engine/common/error.h"
#include "engine/core/loop_backend.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace qllm::test {

struct SimDeviceOptions {
  sched::LoopConfig loop;                // layers and policy are filled in from the model and limits
  uint32_t out_capacity = 1024;
  uint32_t out_timing_reserve = 256;
  std::chrono::microseconds unit_pause{0};  // extra time every unit takes
};

class SimDevice final : public LoopBackend::Device {
 public:
  SimDevice(const cpu::ReferenceModel& model, const EngineLimits& lim, SimDeviceOptions opt)
      : cpu_(model, lim.ls_slots + lim.be_slots, lim.kv_blocks, lim.block_size), opt_(opt) {
    const uint32_t slots = uint32_t(lim.ls_slots + lim.be_slots);
    const size_t bytes = sched::control_block_bytes(opt.out_capacity);
    mem_.reset(static_cast<char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    cb_ = sched::control_block_init(mem_.get(), bytes, {slots, opt.out_capacity, opt.out_timing_reserve});
    opt_.loop.layers = model.desc().layers;
    opt_.loop.policy.policy = lim.policy;
    opt_.loop.policy.be_max_wait_ns = uint64_t(lim.be_max_wait_s * 1e9);
    state_ = std::make_unique<sched::LoopState>(
        sched::loop_state_init(sched::make_device_end(cb_, *cb_), opt_.loop));
    exec_.dev = this;
    exec_.tokens.resize(slots);
    exec_.counts.resize(slots);
    thread_ = std::thread([this] {
      while (sched::loop_cycle(*state_, exec_) == sched::LoopAction::Relaunch) {
      }
      running_.store(false, std::memory_order_release);
    });
  }
  ~SimDevice() override {
    if (thread_.joinable()) {
      if (running_.load(std::memory_order_acquire)) {  // the test did not shut it down
        sched::HostEnd h = sched::make_host_end(cb_);
        h.shutdown_sent = sync::load_acquire_sys(&cb_->life.host.shutdown_request);
        sched::host_request_shutdown(h);
        // drain so the loop can push its last records
        sched::DrainEnd d = sched::make_drain_end(cb_);
        d.tail = sync::load_acquire_sys(&cb_->out.host.tail);
        while (running_.load(std::memory_order_acquire)) {
          sched::host_drain_output(d, [](const sched::OutputRecord&) {});
          std::this_thread::yield();
        }
      }
      thread_.join();
    }
  }
  SimDevice(const SimDevice&) = delete;
  SimDevice& operator=(const SimDevice&) = delete;

  sched::ControlBlock* control_block() { return cb_; }
  // The pass's chunks are copied into the slot's buffer `meta`; the loop's
  // begin unit starts the CPU pass from them (the other buffer may hold the
  // pass running now). The publish that follows orders these writes before
  // the loop's reads, as on the GPU.
  void stage(int slot, int meta, std::span<const cpu::SeqChunk> chunks,
             std::span<const SampleSpec> sampling) override {
    QLLM_CHECK(meta == 0 || meta == 1);
    Staged& st = staged_[size_t(slot)][size_t(meta)];
    st.tokens.clear();
    st.tables.clear();
    st.chunks.clear();
    for (const auto& c : chunks) {
      st.tokens.emplace_back(c.tokens.begin(), c.tokens.end());
      st.tables.emplace_back(c.block_table.begin(), c.block_table.end());
    }
    for (size_t i = 0; i < chunks.size(); ++i)
      st.chunks.push_back({st.tokens[i], chunks[i].start_pos, st.tables[i], chunks[i].logits});
    st.sampling.assign(sampling.begin(), sampling.end());
  }
  bool running() override { return running_.load(std::memory_order_acquire); }

  // The loop's state, once it exited.
  const sched::LoopState& state() const {
    QLLM_CHECK(!running_.load(std::memory_order_acquire));
    return *state_;
  }
  // The next attn unit of `layer` (any slot) reports an impossible expert
  // count (BadExpertCount) / sets the kernels' error word (the pass fails).
  void inject_bad_count(int layer) { bad_count_layer_.store(layer); }
  void inject_error_word(int layer) { error_word_layer_.store(layer); }

 private:
  struct Exec {
    SimDevice* dev = nullptr;
    std::vector<std::vector<int32_t>> tokens;
    std::vector<int> counts;
    uint64_t arg = 0;
    int32_t error_word[sched::kMaxSlots] = {};

    uint64_t now_ns() {
      return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count());
    }
    void sleep_ns(uint32_t ns) {
      if (ns < 2000) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::nanoseconds(ns));
    }
    bool launch_begin(int slot, const sched::BatchDesc& d) {
      if (d.meta_index > 1) return false;
      const Staged& st = dev->staged_[size_t(slot)][d.meta_index];
      dev->cpu_.begin(slot, st.chunks, st.sampling);
      return true;
    }
    bool launch_unit(int slot, const sched::BatchDesc&, const sched::Cursor& c, const sched::LoopSlot&) {
      if (dev->opt_.unit_pause.count() > 0) std::this_thread::sleep_for(dev->opt_.unit_pause);
      const int n = dev->cpu_.run(slot, c);
      if (c.kind == sched::UnitKind::Attn) {
        counts[size_t(slot)] = n;
        if (dev->error_word_layer_.load() == c.layer) {
          dev->error_word_layer_.store(-1);
          error_word[slot] = 1;
        }
        if (dev->bad_count_layer_.load() == c.layer) {
          dev->bad_count_layer_.store(-1);
          counts[size_t(slot)] = -1;
        }
      }
      if (c.kind == sched::UnitKind::Head) tokens[size_t(slot)] = dev->cpu_.sampled(slot);
      return true;
    }
    uint64_t error_arg() { return arg; }
    int expert_list(int slot, int, const sched::BatchDesc&, sched::LoopSlot& ls) {
      const int n = counts[size_t(slot)];
      for (int k = 0; k < n && k < sched::kMaxLoopExperts; ++k) {  // positions: the CPU backend keeps the ids
        ls.expert_id[k] = int16_t(k);
        ls.expert_rows[k] = 1;
      }
      return n;
    }
    int32_t take_error_word(int slot) {
      const int32_t w = error_word[slot];
      error_word[slot] = 0;
      return w;
    }
    int32_t sampled_token(int slot, int i) { return tokens[size_t(slot)].at(size_t(i)); }
  };

  struct Free {
    void operator()(char* p) const { std::free(p); }
  };

  struct Staged {  // one metadata buffer: a pass's chunks, owning their data
    std::vector<std::vector<int32_t>> tokens, tables;
    std::vector<cpu::SeqChunk> chunks;
    std::vector<SampleSpec> sampling;
  };

  CpuBackend cpu_;
  SimDeviceOptions opt_;
  std::vector<std::array<Staged, 2>> staged_{sched::kMaxSlots};  // per slot, per metadata buffer
  std::unique_ptr<char, Free> mem_;
  sched::ControlBlock* cb_ = nullptr;
  std::unique_ptr<sched::LoopState> state_;
  Exec exec_;
  std::atomic<int> bad_count_layer_{-1}, error_word_layer_{-1};
  std::atomic<bool> running_{true};
  std::thread thread_;  // last: starts after everything it uses
};

}  // namespace qllm::test
