// The host dispatcher: a UnitBackend (engine/core/unit_backend.h) that runs
// each work unit of the engine as a CUDA graph captured at construction,
// launched from the engine's thread. The baseline the device scheduler must
// beat: the same graphs (instantiated for device launch), the same policy,
// but a host thread decides and launches every unit, and reads the router's
// expert counts back to the host once per layer.
//
//   gpu::GpuHostBackend b(weights, gpu::HostBackendConfig::from(limits, max_seq_len));
//   fmt::print("{}\n", b.capture_summary().str());   // graphs, seconds, device memory
//   Engine e(b, limits, clock);                      // slots = limits.ls_slots + be_slots
//
// Graphs (per slot s; T = max tokens per step, S = max sequences per step,
// buckets are the powers of two 1, 2, 4, ...; index i holds 2^i rows,
// graphs::bucket_of picks it, the same index as kernels/gemm.h bucket_index):
//
//   begin          1             embedding; reads the row count from the
//                                device, so one graph serves every bucket
//   attn[l][b]     b <= R        prefill attention kernel; any pass
//   attn_dec[l][b] b <= Rl       decode attention kernel; a pass whose every
//                                chunk has one token (rows <= S)
//   expert[l][e][b] b <= R       e < E in a MoE layer, e = 0 in a dense one
//   head[b]        b <= Rl       final norm, LM head, sampling
//
// with R = bucket_for(T) and Rl = bucket_for(S). attn, expert and head live in
// a graphs::GraphTable (the index the device scheduler will read); attn_dec in
// a second table of the same slots and layers (no experts); begin beside them.
//
// Attention kernel: both are correct for any mix of rows. The decode kernel
// splits each row's keys over thread blocks and is the fast one when every row
// is a decode row (the steady state of generation: one row per sequence, which
// the prefill kernel's query tiles mostly leave empty); the prefill kernel
// tiles queries and wins as soon as one chunk has many rows. So a pass of
// single-token chunks runs attn_dec, every other pass attn. A pure decode pass
// has at most S rows, which is why attn_dec stops at Rl.
//
// Per unit (all on the slot's stream; NVTX ranges host/set_step, host/launch,
// host/count readback, host/token readback):
//
//   begin     SlotBuffers::set_step (pack + one copy), launch begin
//   run Attn  launch attn[l][bucket(rows)] (or attn_dec); copy the expert
//             counts and the error word into pinned memory and synchronise
//             the stream: the host dispatcher's round trip, once per layer.
//             Returns how many experts got rows; remembers their ids ascending
//   run Expert launch expert[l][ids[k]][bucket(count)]
//   run Head  launch head[bucket(logit rows)] (nothing when no chunk wants
//             logits), copy the sampled tokens and the error word back and
//             synchronise: the pass's GPU time ends inside the unit the
//             engine times (Engine::step times run(), not sampled())
//   sampled   the tokens read back by the head
//
// The device error word (SlotPointers::error) is read with every readback; a
// nonzero word throws qllm::Error (error_word_meaning) and is reset, so the
// slot can take a new pass. Units of different slots overlap on their own
// streams (only the readbacks wait, each for its own stream); units of one
// slot are ordered by its stream. Not thread-safe: one engine thread calls it.
#pragma once

#include "engine/core/engine.h"
#include "engine/core/unit_backend.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/gpu_model.h"
#include "graphs/capture.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qllm::gpu {

struct HostBackendConfig {
  int slots = 2;            // scheduler.ls_slots + scheduler.be_slots
  int max_tokens = 256;     // T: scheduler.max_tokens_per_step
  int max_seqs = 32;        // S: scheduler.max_seqs_per_step
  int64_t kv_blocks = 0;    // KV-cache blocks
  int block_size = 16;      // tokens per block
  int max_seq_len = 4096;   // longest sequence (sizes the block tables)
  int sm_count = 0;         // 0: the device's multiprocessors
  uint64_t gemm_workspace_bytes = kDefaultGemmWorkspaceBytes;

  // The engine's slots, batch limits and KV cache.
  static HostBackendConfig from(const EngineLimits& l, int max_seq_len);
  GpuModelConfig model_config() const;
};

// How many graphs of each kind the backend captures (the table above): a
// pure function of the model's shape and the configuration.
struct GraphCounts {
  int64_t begin = 0, attn = 0, attn_decode = 0, expert = 0, head = 0;
  int64_t total() const { return begin + attn + attn_decode + expert + head; }
};
GraphCounts count_unit_graphs(const ModelDesc& d, int slots, int max_tokens, int max_seqs);

// What the capture at construction did.
struct CaptureSummary {
  GraphCounts graphs;
  double seconds = 0;           // wall time of every capture, instantiation and upload
  int64_t device_bytes = 0;     // device memory they took (cudaMemGetInfo free, before - after)
  // "166 unit graphs (2 slots: 2 begin, 14 attn + 8 decode attn, 56 expert, 8 head) captured in
  //  0.41 s, 12.6 MB of device memory"
  std::string str() const;
};

// The meaning of a nonzero device error word (kernels set it to 1).
std::string error_word_meaning(int32_t word);

class GpuHostBackend final : public UnitBackend {
 public:
  // Builds the GpuModel (KV cache, slot buffers, GEMM plans), one stream per
  // slot, and captures every graph. `w` must outlive the backend. Throws
  // qllm::Error when the model or configuration is outside what the GPU
  // model supports, or a graph cannot be captured for device launch.
  GpuHostBackend(const DeviceWeights& w, const HostBackendConfig& cfg);
  ~GpuHostBackend() override;
  GpuHostBackend(const GpuHostBackend&) = delete;
  GpuHostBackend& operator=(const GpuHostBackend&) = delete;

  const ModelDesc& desc() const override { return model_->desc(); }
  void begin(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) override;
  int run(int slot, const sched::Cursor& unit) override;
  std::vector<int32_t> sampled(int slot) override;

  // The host side of begin() without the launch: packs the pass's per-step
  // metadata into the slot's buffers (set_step) and waits for the copy. The
  // device dispatcher calls it before publishing a pass to the device loop,
  // with `dst` one of its staging buffers (SlotBuffers::set_step).
  void stage(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling,
             void* dst = nullptr);

  const CaptureSummary& capture_summary() const { return summary_; }
  const HostBackendConfig& config() const { return cfg_; }
  GpuModel& model() { return *model_; }
  const GpuModel& model() const { return *model_; }
  cudaStream_t stream(int slot) const;
  const graphs::GraphTable& graph_table() const { return *table_; }          // attn, expert, head
  const graphs::GraphTable& decode_attn_table() const { return *decode_; }  // attn_dec
  cudaGraphExec_t begin_graph(int slot) const;

  // The logit rows of the slot's last head unit, [logit rows, V] (copied
  // back and synchronised: tests and diagnostics, not the serving path).
  std::vector<float> logits(int slot) const;

 private:
  struct Slot;
  Slot& at(int slot);
  void launch(int slot, cudaGraphExec_t exec, const char* what);
  void set_step(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling,
                void* dst = nullptr);
  void check_error(int slot, const char* unit);
  void capture_all();

  HostBackendConfig cfg_;
  std::unique_ptr<GpuModel> model_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unique_ptr<graphs::GraphTable> table_;   // attn (prefill kernel), expert, head
  std::unique_ptr<graphs::GraphTable> decode_;  // attn with the decode kernel
  int buckets_ = 0, head_buckets_ = 0;          // R and Rl as counts of buckets
  CaptureSummary summary_;
};

}  // namespace qllm::gpu
