// Synthetic weights generated on the device: the same counter-based values as
// engine/model/synthetic_init.h on the host, so `model.synthetic_weights`
// creates real-shape weights in GPU memory without a file, bit for bit what
// `qllm make-model` writes.
//
//   out[i] = round(synth_value(init, first + i)),   0 <= i < n
//
// rounded to nearest even (bf16), as the host's f32_to_bf16. `first` is the
// flat index of out[0] in the tensor's [rows, cols] matrix, so a tensor can be
// filled in pieces; a fused expert tensor is filled per (expert, part) with
// the per-expert init and first = 0 at each piece's start (synthetic_init.h:
// fused_gate_up_index, fused_down_index). Any alignment of `out`; n may be 0.
#pragma once

#include "engine/model/synthetic_init.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace qllm::cuda {

void synthetic_fill_bf16(__nv_bfloat16* out, uint64_t n, const synth::SynthInit& init, uint64_t first,
                         cudaStream_t stream);

// The fp32 values before rounding (norm weights kept in fp32, checks).
void synthetic_fill_f32(float* out, uint64_t n, const synth::SynthInit& init, uint64_t first,
                        cudaStream_t stream);

}  // namespace qllm::cuda
