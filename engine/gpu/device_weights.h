// Every weight of a model in GPU memory as bf16, laid out by
// layout.h plan_weight_layout (one allocation; per layer a fused QKV matrix
// and, per expert, one fused [2F, H] gate|up matrix and a [H, F] down).
//
//   auto w = gpu::DeviceWeights::upload(ck, stream);            // from the checkpoint's files
//   auto s = gpu::DeviceWeights::synthetic(desc, seed, stream);  // make-model's weights, made on the GPU
//
// upload() converts F16/F32 tensors to bf16 on the host (round to nearest
// even, as engine/common/dtype.h f32_to_bf16), chunk by chunk through two
// pinned staging buffers, and copies them with cudaMemcpyAsync while the next
// chunk converts. synthetic() fills the same tensors on the device with
// kernels/synthetic_fill.h, each with the key make-model uses for that tensor
// (synth_init: the per-expert-layout name), so a synthetic model equals,
// bit for bit, the bf16 file `qllm make-model` writes with the same seed.
//
// max_layers > 0 keeps the first max_layers layers (desc().layers says how
// many); the padding bytes between matrices are zero in both modes.
#pragma once

#include "engine/gpu/layout.h"
#include "engine/model/checkpoint.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace qllm::gpu {

using bf16 = __nv_bfloat16;

// Device pointers of one layer (shapes: layout.h).
struct LayerWeights {
  const bf16* input_norm = nullptr;  // [H]
  const bf16* post_norm = nullptr;   // [H]
  const bf16* qkv = nullptr;         // [qd + 2 kvd, H]
  const bf16* o = nullptr;           // [H, qd]
  const bf16* q_norm = nullptr;      // [hd] or [qd]; null without QK norm
  const bf16* k_norm = nullptr;      // [hd] or [kvd]
  const bf16* router = nullptr;      // [E, H]; null in a dense layer
  int mlps = 0;                      // E, or 1 in a dense layer
  int ffn = 0;                       // F, or D in a dense layer
  std::vector<const bf16*> gate_up;  // per MLP [2 ffn, H]
  std::vector<const bf16*> down;     // per MLP [H, ffn]
};

struct UploadOptions {
  int max_layers = 0;                        // 0: all
  bool progress = true;                      // engine/common/progress.h line
  uint64_t staging_bytes = uint64_t(64) << 20;  // each of the two pinned buffers
};

class DeviceWeights {
 public:
  // Throws qllm::Error when a weight cannot be read. Returns when the copies
  // are done (the stream is synchronised).
  static DeviceWeights upload(const Checkpoint& ck, cudaStream_t stream, const UploadOptions& opts = {});
  // The weights make-model writes for `d` and `seed` (a desc parsed from its
  // config.json). Returns when the fills are done.
  static DeviceWeights synthetic(const ModelDesc& d, uint64_t seed, cudaStream_t stream, int max_layers = 0);

  DeviceWeights(DeviceWeights&&) noexcept;
  DeviceWeights& operator=(DeviceWeights&&) noexcept;
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;
  ~DeviceWeights();

  const ModelDesc& desc() const { return desc_; }
  const WeightLayout& layout() const { return layout_; }
  const LayerWeights& layer(int l) const { return layers_[size_t(l)]; }
  const bf16* embed() const { return at(layout_.embed); }            // [V, H]
  const bf16* final_norm() const { return at(layout_.final_norm); }  // [H]
  const bf16* lm_head() const { return at(layout_.lm_head); }        // [V, H]; the embedding when tied
  const void* data() const { return base_; }
  uint64_t bytes() const { return layout_.total_bytes; }

 private:
  explicit DeviceWeights(const ModelDesc& d);
  const bf16* at(uint64_t offset) const {
    return reinterpret_cast<const bf16*>(static_cast<const uint8_t*>(base_) + offset);
  }
  ModelDesc desc_;
  WeightLayout layout_;
  void* base_ = nullptr;
  std::vector<LayerWeights> layers_;
};

// `d` with only its first max_layers layers (0 or >= d.layers: unchanged).
ModelDesc keep_layers(const ModelDesc& d, int max_layers);

// Elements [first, first + n) of `m` (row-major, any dtype, any row stride)
// as bf16 bits, rounded to nearest even. Pure host code.
void to_bf16(const MatrixView& m, int64_t first, int64_t n, uint16_t* out);

}  // namespace qllm::gpu
