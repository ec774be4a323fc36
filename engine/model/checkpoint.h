// Checkpoint: a Hugging Face model folder, memory-mapped and validated.
//
//   auto ck = qllm::Checkpoint::open("models/mixtral");
//   const qllm::ModelDesc& d = ck.desc();
//   qllm::ExpertView e = ck.expert(layer, j);   // gate [I,H], up [I,H], down [H,I]
//   qllm::MatrixView q = ck.weight(qllm::TensorRole::QProj, layer);
//
// open() reads config.json (ModelDesc), maps model.safetensors or the shards
// named by model.safetensors.index.json, and checks every tensor the model
// needs: present, the shape config.json implies, a BF16/F16/F32 dtype. Errors
// are qllm::Error naming the folder, the shard file and the tensor. Tensors
// the model does not use are reported in warnings(), not rejected.
//
// Expert weights may be stored per expert (experts.j.w1/w3/w2 or
// experts.j.gate_proj/up_proj/down_proj) or fused (experts.gate_up_proj
// [E,2I,H], gate rows first, and experts.down_proj [E,H,I]); expert() returns
// the same [rows, cols] views for both, pointing into the mapped files (no
// copies). Views stay valid as long as the Checkpoint lives.
#pragma once

#include "engine/model/model_desc.h"
#include "engine/model/safetensors.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

// A 2-D weight inside a mapped file: `rows` rows of `cols` elements, row r
// starting `r * row_stride` elements after `data`. 1-D tensors are one row.
// `data` may be unaligned: read through at()/row_to_f32() or memcpy.
struct MatrixView {
  std::string_view tensor;  // name of the tensor it lies in
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0;   // in elements
  const uint8_t* data = nullptr;

  size_t elem_size() const { return dtype_size(dtype); }
  size_t row_bytes() const { return static_cast<size_t>(cols) * elem_size(); }
  bool contiguous() const { return rows <= 1 || row_stride == cols; }
  int64_t numel() const { return rows * cols; }
  const uint8_t* row(int64_t r) const {
    return data + static_cast<size_t>(r * row_stride) * elem_size();
  }
  float at(int64_t r, int64_t c) const;
  void row_to_f32(int64_t r, float* out) const;  // `cols` values
};

// One expert's SwiGLU weights: down(silu(gate·x) ⊙ (up·x)).
struct ExpertView {
  MatrixView gate;  // [I, H]
  MatrixView up;    // [I, H]
  MatrixView down;  // [H, I]
};

// One row of Checkpoint::tensor_table() (for `qllm inspect`).
struct CheckpointTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string shard;      // file name inside the folder
  uint64_t nbytes = 0;
  std::optional<TensorRole> role;  // empty: not used by the model
  int layer = -1, expert = -1;
};

struct CheckpointOptions {
  bool progress = true;   // progress line while opening shards
  bool prefault = false;  // read every page once (warms the page cache; slow)
};

class Checkpoint {
 public:
  // Reads `dir`/config.json and opens the weights. Throws qllm::Error.
  static Checkpoint open(const std::filesystem::path& dir, const CheckpointOptions& opts = {});
  // As above with an already parsed description.
  static Checkpoint open(const std::filesystem::path& dir, ModelDesc desc,
                         const CheckpointOptions& opts = {});

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  const ModelDesc& desc() const;
  const std::filesystem::path& dir() const;
  ExpertLayout expert_layout() const;
  bool sharded() const;           // read through model.safetensors.index.json
  size_t num_shards() const;
  bool lm_head_tied() const;      // lm_head served by the embedding table
  uint64_t total_bytes() const;   // all tensor bytes, all shards

  // The weight of `role` (layer and expert as the role needs). Expert roles
  // work in either layout; FusedGateUp/FusedDown only in the fused layout
  // ([E*2I, H] and [E*H, I]); LmHead returns the embedding when tied.
  // Throws qllm::Error when the model has no such weight (e.g. QNorm of
  // Mixtral, an expert of a dense layer) or an index is out of range.
  MatrixView weight(TensorRole role, int layer = -1, int expert = -1) const;
  ExpertView expert(int layer, int expert) const;
  MatrixView embed() const { return weight(TensorRole::Embed); }
  MatrixView lm_head() const { return weight(TensorRole::LmHead); }
  MatrixView final_norm() const { return weight(TensorRole::FinalNorm); }

  // Any tensor by its file name (used or not); throws when absent.
  TensorView tensor(std::string_view name) const;
  bool contains(std::string_view name) const;
  // Every tensor of every shard, in file order.
  std::vector<CheckpointTensor> tensor_table() const;
  // Unexpected tensors and index oddities found while opening.
  const std::vector<std::string>& warnings() const;

 private:
  struct Impl;
  explicit Checkpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qllm
