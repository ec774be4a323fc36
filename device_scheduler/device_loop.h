// The device dispatcher's GPU half: the scheduler loop (loop.h) run by one
// thread of a one-block kernel that lives in its own graph, instantiated for
// device launch; each execution runs one cycle, launches at most one unit
// graph fire-and-forget and tail-launches itself (README.md, "Device loop").
//
//   GpuLoopTables t;                          // unit graphs and per-slot device buffers
//   t.main = table.upload(stream);            // attn (prefill kernel), expert, head
//   t.decode = decode_table.upload(stream);   // attn with the decode kernel
//   t.begin = d_begin;                        // device array [slots][2] of begin graphs (per metadata buffer)
//   t.slot[s] = {counts, error, tokens_out};  // device pointers, per slot
//   t.units[l] = experts or 1; t.fanout[l] = top_k or 1;
//   DeviceLoop loop(cb, cfg, t, stream);      // cb: host view, cudaHostAllocMapped
//   loop.start();
//   ... publish batches, drain the output ring, cancel (control_block.h) ...
//   host_request_shutdown(h); drain until host_shutdown_acked(h) or host_check_error(*cb);
//   loop.wait(5.0);
//
// While the loop runs, the GPU is shared with a kernel that never ends on its
// own: the owner must not call anything that waits for the whole device
// (cudaDeviceSynchronize, cudaFree, cudaMalloc*Host/cudaFreeHost may), nor
// put work on the legacy default stream (it would wait for the loop). The
// loop's stream must be created with cudaStreamNonBlocking and hold nothing
// else; other work goes to other non-blocking streams.
#pragma once

#include "device_scheduler/control_block.h"
#include "device_scheduler/loop.h"
#include "graphs/graph_table.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <type_traits>

namespace qllm::sched {

inline constexpr int kMaxLayers = 128;

// Per slot: the device buffers the loop reads between units.
struct GpuLoopSlot {
  // [units of the widest layer]: rows per expert, written by the attn unit
  // (the router); read after each attn unit, counts[0 .. units[layer]).
  const int32_t* counts = nullptr;
  // [1]: the kernels' error word; nonzero ends the pass (kRecordBadData) and
  // the loop resets it to 0 before the slot's next unit.
  int32_t* error = nullptr;
  // [max sequences]: sampled tokens, written by the head; tokens_out[i] is
  // pushed as the Token record of sampled row i.
  const int32_t* tokens_out = nullptr;
  // [1], optional (nullptr: not written): the loop writes the pass's
  // descriptor here before launching its begin unit, so the pass's kernels
  // can read it (pass id, rows, meta_index).
  BatchDesc* desc = nullptr;
};

// What the loop launches and reads (plain data; copied to device memory).
struct GpuLoopTables {
  graphs::DeviceGraphTable main;    // attn (prefill kernel), expert, head
  graphs::DeviceGraphTable decode;  // attn with the decode kernel, for kBatchDecodeOnly passes
                                    // (execs == nullptr: those use main's attn too)
  // device array [slots][kMetaBuffers]: the begin unit of a pass whose
  // metadata is in the slot's buffer m (copies it in, then the embedding)
  const cudaGraphExec_t* begin = nullptr;
  GpuLoopSlot slot[kMaxSlots];
  int32_t units[kMaxLayers] = {};   // expert units of layer l: experts of a MoE layer, 1 for a dense one
  int32_t fanout[kMaxLayers] = {};  // rows each token sends to experts: top_k of a MoE layer, 1 for a dense one
};

static_assert(std::is_trivially_copyable_v<GpuLoopTables> && std::is_trivially_copyable_v<LoopState>,
              "copied to device memory as bytes");

// ErrorCode::GraphLaunch arguments of the device loop:
//   bit 63 clear, bit 62 clear: a unit graph's fire-and-forget launch
//       failed; the value is the cudaError_t;
//   bit 62 set: the loop's own tail launch failed; low 32 bits: the cudaError_t;
//   bit 63 set: no graph for the unit: bits 56..59 the slot, 48..51 the
//       kind (kLaunch*), 32..47 the layer, 16..31 the expert id, 0..15 the
//       bucket (0xffff: the rows exceed the largest bucket; for begin: the
//       metadata buffer).
inline constexpr uint64_t kLaunchNoGraph = 1ull << 63;
inline constexpr uint64_t kLaunchRelaunch = 1ull << 62;
inline constexpr uint32_t kLaunchAttn = 0, kLaunchExpert = 1, kLaunchHead = 2, kLaunchBegin = 3,
                          kLaunchDecodeAttn = 4;

QLLM_HD inline uint64_t no_graph_arg(int slot, uint32_t kind, int layer, int expert, int bucket) {
  return kLaunchNoGraph | (uint64_t(uint32_t(slot) & 0xfu) << 56) | (uint64_t(kind & 0xfu) << 48) |
         (uint64_t(uint32_t(layer) & 0xffffu) << 32) | (uint64_t(uint32_t(expert) & 0xffffu) << 16) |
         uint64_t(bucket < 0 ? 0xffffu : uint32_t(bucket) & 0xffffu);
}

// "slot 1: no graph for expert 3 of layer 2 at bucket 4", "device-side
// cudaGraphLaunch of a unit graph failed: cudaErrorInvalidValue (...)".
std::string describe_graph_launch_error(uint64_t arg);

// The scheduler loop on the GPU. Owns the loop's state and tables in device
// memory and the scheduler graph; not the control block, the unit graphs or
// the slot buffers (they must outlive it). One host thread calls its members.
class DeviceLoop {
 public:
  // `cb`: the host's view of an initialised control block in
  // cudaHostAllocMapped memory (nobody has published to it yet);
  // `cfg.layers` must equal the tables' layers. Copies the state and tables
  // to the device and captures the scheduler graph (instantiated for device
  // launch, uploaded) on `stream`, which must be a non-blocking stream that
  // holds nothing else. Throws qllm::Error on a bad configuration or a CUDA
  // failure.
  DeviceLoop(ControlBlock* cb, const LoopConfig& cfg, const GpuLoopTables& tables, cudaStream_t stream);
  // If the loop still runs, waits a few seconds for it to stop and otherwise
  // leaves its memory and graph behind (freeing them would wait for the
  // loop): the owner requests shutdown (or sees an error) and waits first.
  ~DeviceLoop();
  DeviceLoop(const DeviceLoop&) = delete;
  DeviceLoop& operator=(const DeviceLoop&) = delete;

  // Whether device graph launch is available on `device` (the dispatcher's
  // rule, kernels/device_info.h: compute capability 8.0 or newer and a CUDA
  // 12 runtime); otherwise false and the reason in *why.
  static bool supported(int device, std::string* why);

  // Launches the scheduler graph from the host on the stream. Once.
  void start();
  bool started() const { return started_; }
  // True while the loop runs (the scheduler graph and its tail launches have
  // not finished). Throws qllm::Error when the stream reports a CUDA error
  // (a fault in the loop or a unit).
  bool running() const;
  // Waits until the loop stopped or `timeout_s` passed; true when it stopped.
  bool wait(double timeout_s) const;
  // The loop's state, copied back. Only once it stopped (throws otherwise).
  LoopState state() const;

  cudaStream_t stream() const { return stream_; }
  cudaGraphExec_t graph() const { return exec_; }

 private:
  void release();

  ControlBlock* cb_ = nullptr;  // host view
  cudaStream_t stream_ = nullptr;
  LoopState* d_state_ = nullptr;
  GpuLoopTables* d_tables_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  bool started_ = false;
};

}  // namespace qllm::sched
