// Causal GQA attention over the paged KV cache, one block per (row, kv head,
// split of the row's keys): flash-decoding. Meant for passes of decode rows
// (one query per sequence), where attention_prefill would give each row only
// one block per kv head; it is correct for any row. Arguments and semantics:
// kernels/attention_args.h; reference: engine/cpu/attention.h.
//
// Splits. `num_splits` is fixed at capture (attention_decode_splits picks one
// from the capacities). On the device each row cuts its n = pos - lo + 1 keys
// into splits of
//   len = max(256, round_up(ceil(n / num_splits), 64))
// keys; splits past ceil(n / len) exit at once. A row that uses one split is
// written by the split itself; otherwise each split writes its partial (max,
// sum, unnormalised output) to the workspace and a combine kernel merges them.
#pragma once

#include "kernels/attention_args.h"

#include <cuda_runtime.h>

#include <cstddef>

namespace qllm::cuda {

// A split count for these capacities: enough (row, kv head, split) blocks for
// about two per multiprocessor when every row is active, at most one split per
// 256 positions of max_seq_len, at most 64.
int attention_decode_splits(int rows_cap, int heads, int kv_heads, int max_seq_len, int sm_count);

// Workspace bytes for attention_decode: rows_cap * heads * num_splits *
// (head_dim + 2) * 4 (0 when num_splits is 1).
size_t attention_decode_workspace_bytes(int rows_cap, int heads, int head_dim, int num_splits);

// Launches the split kernel and, when num_splits > 1, the combine kernel on
// `stream`; no allocation, no synchronisation (capturable). `workspace`
// (device, 16-byte aligned) holds at least attention_decode_workspace_bytes.
// Aborts with a message on a bad shape.
void attention_decode(const PagedAttention& a, int num_splits, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream);

}  // namespace qllm::cuda
