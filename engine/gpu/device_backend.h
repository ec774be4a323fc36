// The device dispatcher: the scheduler loop on the GPU
// (device_scheduler/device_loop.h) launching the host dispatcher's unit
// graphs (host_backend.h) by device graph launch, with LoopBackend
// (engine/core/loop_backend.h) as its host half. A PassBackend: the engine
// publishes whole passes; the policy, the choice of every unit and of its
// bucket run on the GPU, with no host round trip per unit, layer or pass.
//
//   gpu::GpuDeviceBackend b(weights, gpu::HostBackendConfig::from(limits, max_seq_len),
//                           gpu::DeviceBackendOptions::from(limits));
//   fmt::print("{}\n", b.self_test_summary());   // what the start-up self-test compared
//   Engine e(b, limits, clock);                   // a real-time clock
//
// Start-up, in order:
//   1. GpuHostBackend: the model, its buffers and every unit graph captured
//      and instantiated for device launch (the host dispatcher's graphs);
//   2. the self-test's reference: a prefill pass (slot 0) and a decode pass
//      (slot 1) launched from the host, their logits and tokens kept;
//   3. per slot, two staging buffers of its per-step metadata and a begin
//      graph for each (copy the buffer in, then the embedding: a pass is
//      staged while the slot's previous pass still runs); the control block
//      (cudaHostAllocMapped), the graph tables uploaded, and DeviceLoop
//      started on its own non-blocking stream;
//   4. the self-test: the same two passes published to the device loop, and
//      the decode pass again on slot 0, so every kind of unit graph (begin
//      from either metadata buffer, attn with each attention kernel, expert,
//      head) is launched from the device at least once; their logits must
//      match the host launch's (same graphs, same inputs) and their tokens
//      too. Any difference, error or timeout throws qllm::Error, and the
//      dispatcher choice falls back to `host` when the choice was `auto`.
//
// Shutdown (destructor): the loop is asked to stop and waited for (5 s at
// most) before anything it uses is freed.
#pragma once

#include "device_scheduler/loop.h"
#include "engine/core/loop_backend.h"
#include "engine/gpu/host_backend.h"

#include <cuda_runtime_api.h>

#include <functional>
#include <memory>
#include <string>

namespace qllm::sched {
class DeviceLoop;
}

namespace qllm::gpu {

struct DeviceBackendOptions {
  sched::LoopConfig loop;            // policy, idle wait (layers are the model's)
  uint32_t out_capacity = 16384;     // output ring records
  uint32_t out_timing_reserve = 4096;
  bool self_test = true;
  double self_test_tolerance = 2e-2;  // max |logit difference| / max(1, max |logit|)

  // The engine's policy and BE promotion.
  static DeviceBackendOptions from(const EngineLimits& l);
};

class GpuDeviceBackend : public PassBackend, private LoopBackend::Device {
 public:
  // `w` outlives the backend. Throws qllm::Error when the GPU model or the
  // graphs cannot be built, device graph launch is unavailable, or the
  // self-test fails (with what differed).
  GpuDeviceBackend(const DeviceWeights& w, const HostBackendConfig& cfg, const DeviceBackendOptions& opt);
  ~GpuDeviceBackend() override;
  GpuDeviceBackend(const GpuDeviceBackend&) = delete;
  GpuDeviceBackend& operator=(const GpuDeviceBackend&) = delete;

  const ModelDesc& desc() const override { return host_->desc(); }
  void attach(const sched::PolicyParams& policy, const Clock& clock) override { pass_->attach(policy, clock); }
  void publish(int slot, uint64_t pass_id, PriorityClass cls, std::span<const cpu::SeqChunk> chunks,
               std::span<const SampleSpec> sampling) override;
  void cancel(uint64_t pass_id) override;
  void collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, double timeout_s,
               const Clock& clock) override;

  // Stops the loop (LoopBackend::shutdown); false when it did not stop in time.
  bool shutdown(double timeout_s);

  const CaptureSummary& capture_summary() const { return host_->capture_summary(); }
  // "self-test: a prefill pass and two decode passes (8 rows, both metadata buffers) launched ... match ..."
  const std::string& self_test_summary() const { return self_test_; }
  const sched::DeviceLoop& loop() const { return *loop_; }
  uint64_t dropped_timings() const { return pass_->dropped_timings(); }
  // The logit rows of the slot's last pass (tests and the self-test), valid
  // while no pass is queued behind it (a queued pass's head writes them).
  std::vector<float> logits(int slot) const { return host_->logits(slot); }
  // Tests: runs after a pass's metadata is staged (`staged`: the device copy
  // of the slot's metadata block its begin unit will copy in, laid out as
  // SlotBuffers::metadata()) and before the pass is published to the loop (to
  // corrupt it on purpose); it must leave its writes complete (synchronise
  // the slot's stream).
  using StageHook = std::function<void(int slot, void* staged, GpuHostBackend& host)>;
  void set_stage_hook(StageHook f) { stage_hook_ = std::move(f); }

 private:
  // LoopBackend::Device
  void stage(int slot, int meta, std::span<const cpu::SeqChunk> chunks,
             std::span<const SampleSpec> sampling) override;
  bool running() override;
  std::string bad_data_message() const override;

  void start_loop(const DeviceBackendOptions& opt);
  void run_self_test(const DeviceBackendOptions& opt);
  void stop_and_free();
  void* staging(int slot, int meta) const;  // the slot's staging buffer `meta` (device memory)

  std::unique_ptr<GpuHostBackend> host_;
  void* cb_mem_ = nullptr;               // pinned, mapped control block
  sched::ControlBlock* cb_ = nullptr;
  cudaStream_t loop_stream_ = nullptr;
  void* d_staging_ = nullptr;            // [slots][kMetaBuffers] metadata blocks, staging_bytes_ apart
  size_t staging_bytes_ = 0;
  std::vector<cudaGraphExec_t> begins_;  // [slots][kMetaBuffers]: copy staging buffer in, then the embedding
  cudaGraphExec_t* d_begin_ = nullptr;   // device copy of begins_
  std::unique_ptr<sched::DeviceLoop> loop_;
  std::unique_ptr<LoopBackend> pass_;
  std::string self_test_;
  StageHook stage_hook_;
  bool leaked_ = false;  // the loop did not stop: what it uses is left allocated
};

}  // namespace qllm::gpu
