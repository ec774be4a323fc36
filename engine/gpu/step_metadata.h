// The host side of a step: a pass's chunks (engine/cpu/reference_model.h
// SeqChunk, the same input the CPU reference takes) packed into the fixed
// arrays of a slot's metadata block (layout.h StepLayout), which the slot
// copies to the device with one cudaMemcpyAsync (slot_buffers.h). Pure: no
// CUDA call, tested on the CPU against cpu::ReferenceModel::begin.
//
// Rows are numbered as ReferenceModel::begin numbers them: chunk after chunk,
// token after token. Row t of chunk c at position p:
//
//   tokens[t] = id    pos[t] = p    seq[t] = c
//   kv_slot[t] = table_c[p / block_size] * block_size + p % block_size
//   tables[c, j] = table_c[j]   (-1 past the chunk's table)
//   logit_rows   = the last row of each chunk that asks for logits, ascending
//   sampling[i]  = the sampling row of the chunk of logit row i
//
// Entries past the step's count hold -1 (tokens, pos, seq, kv_slot, tables,
// logit_rows; sampling rows are SamplingRow{}, greedy), so a kernel that reads past the count
// sees a sentinel, never a stale value from another step.
#pragma once

#include "engine/cpu/reference_model.h"
#include "engine/gpu/layout.h"
#include "kernels/sampling.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace qllm::gpu {

// The paged KV cache a step's block tables point into.
struct KvGeometry {
  int block_size = 16;
  int64_t num_blocks = 0;
};

// What the host keeps of a packed step.
struct StepInfo {
  int rows = 0;                 // token rows
  std::vector<int> logit_rows;  // rows the head computes (head output row i = logit_rows[i])
  std::vector<int> logit_seq;   // the chunk of each logit row
};

// Packs `chunks` into `out` (at least L.bytes bytes; every byte of the block
// is written). `sampling` is empty (every row greedy) or has one entry per
// chunk (used for chunks that ask for logits). Throws qllm::Error when the
// pass does not fit the slot (more rows than rows_cap, more chunks than
// seqs_cap, a block table wider than max_blocks_per_seq) or is malformed (no
// token at all, a token outside [0, vocab), a negative start, a block table
// that does not cover the chunk, a block outside the cache).
StepInfo pack_step(const StepLayout& L, const KvGeometry& kv, int vocab, std::span<const cpu::SeqChunk> chunks,
                   std::span<const cuda::SamplingRow> sampling, std::span<std::byte> out);

// n elements of type T of region r of a packed block (tests, debugging).
template <typename T>
std::vector<T> read_region(std::span<const std::byte> block, const Region& r, size_t n) {
  std::vector<T> v(n);
  if (n > 0) std::memcpy(v.data(), block.data() + r.offset, n * sizeof(T));
  return v;
}

}  // namespace qllm::gpu
