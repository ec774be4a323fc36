// The host half of the device dispatcher: a PassBackend (unit_backend.h) that
// hands passes to the scheduler loop (device_scheduler/loop.h) through the
// control block (device_scheduler/control_block.h) and collects what the loop
// writes back into the output ring.
//
//   publish   Device::stage copies the pass's per-step metadata into one of
//             the slot's two metadata buffers (complete on return), then
//             host_publish_batch; an LS pass sets the LS-pending hint while
//             it is staged. A slot holds two passes: the one running and one
//             queued behind it, staged in the other buffer while the first
//             runs (the loop takes it the cycle the first one ends)
//   cancel    host_request_cancel (queued here while the ring is full)
//   collect   drains the output ring: Token records collect per slot,
//             UnitTiming records become UnitRecords, a PassStart gives the
//             pass's taken_s, a PassDone becomes the pass's PassResult; a
//             device error is thrown with its message
//   shutdown  host_request_shutdown, drain until the loop acknowledges (or
//             raised an error, or stopped, or the deadline passed); passes it
//             abandoned, and batches it never took, end Abandoned
//
// The Device is what differs between the GPU (engine/gpu/device_backend.h:
// slot buffers on the GPU, the loop a self-relaunching graph) and a simulation
// on the CPU (tests: the loop in a host thread over the reference model).
//
// Times: the loop stamps records with its clock (globaltimer on the GPU).
// The first records drained after attach() (each engine attaches its own
// clock) fix the offset to the engine's clock: each was
// written before it was read, so (time read - time written) bounds the
// offset from above, and the smallest of them is taken, once, so that
// mapped times keep the device's order. The error is the delay between the
// newest of those records and the drain (the engine polls: microseconds).
//
// One thread (the engine's) calls every member.
#pragma once

#include "device_scheduler/control_block.h"
#include "engine/core/unit_backend.h"

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace qllm {

class LoopBackend : public PassBackend {
 public:
  class Device {
   public:
    virtual ~Device() = default;
    // Copies the pass's per-step metadata into the slot's metadata buffer
    // `meta` (0 or 1; the pass's BatchDesc::meta_index), complete when it
    // returns (the loop may start the pass right after the publish). The
    // other buffer may belong to the pass running in the slot: leave it be.
    // The pass's begin unit makes buffer `meta` the one its units read.
    // Throws qllm::Error for a pass the slot cannot hold.
    virtual void stage(int slot, int meta, std::span<const cpu::SeqChunk> chunks,
                       std::span<const SampleSpec> sampling) = 0;
    // False once the loop has exited (after a shutdown or an error).
    virtual bool running() = 0;
    // What a PassDone flagged kRecordBadData means on this device.
    virtual std::string bad_data_message() const {
      return "a kernel found bad per-step data (a token, position, KV slot or expert id out of range)";
    }
  };

  // `cb`: the host's view of an initialised control block the loop uses;
  // `dev` and `cb` outlive the backend.
  LoopBackend(const ModelDesc& d, sched::ControlBlock* cb, Device& dev);

  const ModelDesc& desc() const override { return desc_; }
  void attach(const sched::PolicyParams& policy, const Clock& clock) override;
  void publish(int slot, uint64_t pass_id, PriorityClass cls, std::span<const cpu::SeqChunk> chunks,
               std::span<const SampleSpec> sampling) override;
  void cancel(uint64_t pass_id) override;
  void collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, double timeout_s,
               const Clock& clock) override;

  // Stops the loop: see above. Returns false when the loop neither
  // acknowledged nor stopped within `timeout_s`. Results of the passes that
  // ended meanwhile go to `done` (Done ones included).
  bool shutdown(double timeout_s, std::vector<PassResult>& done, const Clock& clock);

  // UnitTiming records the loop dropped because the ring was too full.
  uint64_t dropped_timings() const { return sched::host_dropped_timings(*cb_); }
  // Passes published and not yet reported.
  size_t in_flight() const;

 private:
  // Drains the ring; returns how many PassDone records it turned into results.
  size_t drain(std::vector<PassResult>& done, std::vector<UnitRecord>* units, const Clock& clock);
  void throw_if_failed();
  double to_clock(uint64_t dev_ns) const { return double(dev_ns) * 1e-9 + offset_s_; }

  ModelDesc desc_;
  sched::ControlBlock* cb_;
  Device& dev_;
  sched::HostEnd host_;
  sched::DrainEnd drain_;
  std::vector<std::deque<uint64_t>> published_;      // per slot: pass ids not reported yet, oldest first
  std::vector<std::vector<int32_t>> tokens_;         // per slot: the running pass's tokens so far
  std::vector<double> taken_s_;                      // per slot: the running pass's PassStart (-1: none)
  std::deque<uint64_t> cancels_;                     // not yet in the ring (it was full)
  std::vector<sched::OutputRecord> drained_;         // the records of the last drain
  double offset_s_ = 0;
  bool have_offset_ = false;
  std::string failure_;                              // set once the loop failed
};

}  // namespace qllm
