// Causal GQA attention over the paged KV cache for a pass of token rows:
// prefill chunks of several sequences and decode rows, mixed in any order
// (each row finds its sequence through d_seq). Flash-attention style on tensor
// cores: K/V tiles stream through shared memory with an online softmax in
// fp32, so memory is O(tile) whatever the context length. Arguments and
// semantics: kernels/attention_args.h; reference: engine/cpu/attention.h.
//
// Rows of one sequence share K/V tiles: use this op for passes with prefill
// chunks. For passes of decode rows only, kernels/attention_decode.h splits
// each row's keys over more blocks.
#pragma once

#include "kernels/attention_args.h"

#include <cuda_runtime.h>

namespace qllm::cuda {

// Launches on `stream`; no allocation, no synchronisation (capturable). Aborts
// with a message on a bad shape.
void attention_prefill(const PagedAttention& a, cudaStream_t stream);

}  // namespace qllm::cuda
