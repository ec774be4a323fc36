// Forward passes for qllm_bench_model, driven straight through the host
// dispatcher's backend (engine/gpu/host_backend.h) in slot 0, without an
// engine: the passes it times, the expert lists they produce, and the bytes a
// decode pass has to move.
//
//   const bench::PassInput p = bench::decode_pass(8, 512, 16, vocab);  // 8 sequences at position 512
//   const bench::Routing r = bench::recorded_pass(b, p);   // as the engine runs it, noting the experts
//   bench::host_pass(b, p);                                // as the engine runs it
//   bench::replay_pass(b, p, r);                           // the same graphs back to back
//   bench::check_device_error(b, "decode");                // the kernels' sticky error word
#pragma once

#include "engine/gpu/host_backend.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace qllm::bench {

// One pass's chunks and the vectors their spans point into. Moving keeps the
// spans valid (the inner buffers stay put); copying would not: move-only.
struct PassInput {
  std::vector<std::vector<int32_t>> tokens, tables;
  std::vector<cpu::SeqChunk> chunks;
  std::vector<SampleSpec> sampling;  // greedy, one per chunk that wants logits
  int rows = 0;                      // token rows of the pass
  bool decode_only = false;          // every chunk one token: the decode attention graphs
  PassInput() = default;
  PassInput(PassInput&&) = default;
  PassInput& operator=(PassInput&&) = default;
  PassInput(const PassInput&) = delete;
  PassInput& operator=(const PassInput&) = delete;
};

inline int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

// `batch` sequences, one token each at position `context`, all wanting
// logits; sequence i owns KV blocks [i·n, (i+1)·n), n = ⌈(context+1) / block_size⌉.
PassInput decode_pass(int batch, int context, int block_size, int vocab);

// One sequence's prompt of `prompt` tokens in KV blocks [0, ⌈prompt / block_size⌉),
// one pass per chunk of `chunk` tokens, in order; the last asks for logits.
std::vector<PassInput> prefill_passes(int prompt, int chunk, int block_size, int vocab);

// The experts that got rows in each layer of a pass: (id, rows), ascending id.
using Routing = std::vector<std::vector<std::pair<int, int>>>;

// A pass as the engine runs it on the host dispatcher: begin, then per layer
// run(attn) and run(expert) for each expert with rows, then run(head).
// Returns with the sampled tokens on the host.
void host_pass(gpu::GpuHostBackend& b, const PassInput& p);

// host_pass, reading each layer's expert counts after its attn unit.
Routing recorded_pass(gpu::GpuHostBackend& b, const PassInput& p);

// begin, then the pass's unit graphs launched back to back on the slot's
// stream with the expert lists `r` (from recorded_pass of the same pass): no
// host round trip. Returns without synchronising.
void replay_pass(gpu::GpuHostBackend& b, const PassInput& p, const Routing& r);

// Launches `g` on `s`; a missing graph is a programming error.
void launch(cudaGraphExec_t g, cudaStream_t s, const char* what);

// Synchronises the slot's stream and throws qllm::Error (resetting the word)
// when a kernel flagged bad per-step data.
void check_device_error(gpu::GpuHostBackend& b, const char* what);

// Bytes a decode pass of `batch` sequences at position `context` must move
// with the expert lists `r`: weights (attention, norms, routers, dense MLPs
// and the LM head once; each MoE layer's experts that got rows once each;
// `batch` embedding rows) and KV (K and V of every layer: batch·(context + 1)
// positions read, batch written). Activations are not counted.
struct Traffic {
  int64_t weights = 0, kv = 0;
  int64_t total() const { return weights + kv; }
};
Traffic pass_traffic(const ModelDesc& d, const Routing& r, int batch, int context);

}  // namespace qllm::bench
