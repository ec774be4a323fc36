// Checkpoint: validation of a folder's tensors against its ModelDesc, and the
// views the rest of qllm reads weights through.
#include "engine/model/checkpoint.h"

#include "engine/common/error.h"
#include "engine/model/checkpoint_files.h"
#include "profiling/nvtx.h"

#include <fmt/ranges.h>

#include <unordered_map>
#include <unordered_set>

namespace qllm {
namespace {

uint64_t pack(TensorRole r, int layer, int expert) {
  return (uint64_t(r) << 48) | (uint64_t(uint32_t(layer + 1)) << 24) | uint64_t(uint32_t(expert + 1));
}

std::string where(const TensorSpec& s) {
  std::string w(role_name(s.role));
  if (s.layer >= 0) w += fmt::format(", layer {}", s.layer);
  if (s.expert >= 0) w += fmt::format(", expert {}", s.expert);
  return w;
}

MatrixView matrix_of(const TensorView& v) {
  MatrixView m;
  m.tensor = v.name;
  m.dtype = v.dtype;
  m.data = v.data;
  if (v.shape.empty()) {
    m.rows = 1;
    m.cols = 1;
  } else {
    m.cols = v.shape.back();
    m.rows = v.numel() / (m.cols ? m.cols : 1);
    if (m.cols == 0) m.rows = 0;
  }
  m.row_stride = m.cols;
  return m;
}

}  // namespace

float MatrixView::at(int64_t r, int64_t c) const {
  float f = 0.0f;
  to_f32(dtype, row(r) + static_cast<size_t>(c) * elem_size(), &f, 1);
  return f;
}

void MatrixView::row_to_f32(int64_t r, float* out) const {
  to_f32(dtype, row(r), out, static_cast<size_t>(cols));
}

struct Checkpoint::Impl {
  ModelDesc desc;
  std::filesystem::path dir;
  detail::ShardSet set;
  ExpertLayout layout = ExpertLayout::PerExpert;
  std::unordered_map<uint64_t, TensorView> resolved;
  std::unordered_map<std::string_view, std::pair<TensorRole, std::pair<int, int>>> roles;

  const detail::ShardSet::Loc* find(const std::vector<std::string>& names, std::string* found) const {
    for (const auto& n : names) {
      auto it = set.tensors.find(n);
      if (it != set.tensors.end()) {
        if (found) *found = n;
        return &it->second;
      }
    }
    return nullptr;
  }

  std::string file_of(const detail::ShardSet::Loc& l) const { return (dir / set.names[l.shard]).string(); }

  ExpertLayout detect_layout() const {
    for (int l = 0; l < desc.layers; ++l) {
      if (!desc.is_moe_layer(l)) continue;
      if (find(desc.names.accepted(TensorRole::FusedGateUp, l, -1, ExpertLayout::Fused), nullptr))
        return ExpertLayout::Fused;
      return ExpertLayout::PerExpert;
    }
    return ExpertLayout::PerExpert;
  }

  [[noreturn]] void missing(const TensorSpec& s) const {
    std::string hint;
    if (s.layer >= 0 && desc.is_moe_layer(s.layer)) {
      const bool fused_here =
          find(desc.names.accepted(TensorRole::FusedGateUp, s.layer, -1, ExpertLayout::Fused), nullptr);
      const bool per_here = find(desc.names.accepted(TensorRole::ExpertGate, s.layer, 0), nullptr);
      if (layout == ExpertLayout::Fused && per_here && !fused_here)
        hint = fmt::format("; layer {} stores its experts per expert but earlier layers are fused: mixed "
                           "expert layouts are not supported", s.layer);
      if (layout == ExpertLayout::PerExpert && fused_here && !per_here)
        hint = fmt::format("; layer {} stores its experts fused but earlier layers per expert: mixed "
                           "expert layouts are not supported", s.layer);
    }
    std::string also;
    if (s.accepted.size() > 1)
      also = fmt::format(" (also looked for '{}')",
                         fmt::join(std::vector<std::string>(s.accepted.begin() + 1, s.accepted.end()), "', '"));
    if (s.role == TensorRole::LmHead)
      hint = "; config.json has tie_word_embeddings false, so the LM head is a tensor of its own";
    fail("{}: missing tensor '{}'{} ({}): {} expects shape [{}] in the {} layout; {} hold{} {} tensors{}",
         dir.string(), s.name, also, where(s), desc.architecture, fmt::join(s.shape, ", "),
         layout_name(layout), set.sharded ? fmt::format("the {} shards", set.names.size()) : set.names[0],
         set.sharded ? "" : "s", set.tensors.size(), hint);
  }

  void validate() {
    layout = detect_layout();
    std::unordered_set<std::string> used;
    for (const TensorSpec& s : desc.tensor_specs(layout)) {
      std::string found;
      const auto* loc = find(s.accepted, &found);
      if (!loc) missing(s);
      const TensorEntry& e = set.entry(*loc);
      if (!is_weight_dtype(e.dtype))
        fail("{}: tensor '{}' ({}): dtype {}, expected BF16, F16 or F32", file_of(*loc), found, where(s),
             dtype_name(e.dtype));
      if (e.shape != s.shape)
        fail("{}: tensor '{}' ({}): shape [{}], but config.json of {} implies [{}]", file_of(*loc), found,
             where(s), fmt::join(e.shape, ", "), desc.architecture, fmt::join(s.shape, ", "));
      used.insert(found);
      TensorView v = set.view(*loc);
      resolved.emplace(pack(s.role, s.layer, s.expert), v);
      roles.emplace(v.name, std::make_pair(s.role, std::make_pair(s.layer, s.expert)));
    }
    for (size_t sh = 0; sh < set.files.size(); ++sh)
      for (const auto& e : set.files[sh]->header().tensors)
        if (!used.count(e.name))
          set.warnings.push_back(fmt::format("unexpected tensor '{}' in {} (not used by {}{})", e.name,
                                             set.names[sh], desc.architecture,
                                             e.name == desc.names.lm_head() && desc.tie_word_embeddings
                                                 ? ": tie_word_embeddings is true" : ""));
  }

  const TensorView& get(TensorRole r, int layer, int expert) const {
    auto it = resolved.find(pack(r, layer, expert));
    if (it == resolved.end())
      fail("{}: {} has no {} weight{}{}", dir.string(), desc.architecture, role_name(r),
           layer >= 0 ? fmt::format(" in layer {}", layer) : "",
           expert >= 0 ? fmt::format(" for expert {}", expert) : "");
    return it->second;
  }
};

Checkpoint::Checkpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

Checkpoint Checkpoint::open(const std::filesystem::path& dir, const CheckpointOptions& opts) {
  return open(dir, load_model_desc(dir), opts);
}

Checkpoint Checkpoint::open(const std::filesystem::path& dir, ModelDesc desc, const CheckpointOptions& opts) {
  prof::Range r("load/checkpoint");
  auto impl = std::make_unique<Impl>();
  impl->desc = std::move(desc);
  impl->dir = dir;
  impl->set = detail::open_shards(dir, opts);
  impl->validate();
  return Checkpoint(std::move(impl));
}

const ModelDesc& Checkpoint::desc() const { return impl_->desc; }
const std::filesystem::path& Checkpoint::dir() const { return impl_->dir; }
ExpertLayout Checkpoint::expert_layout() const { return impl_->layout; }
bool Checkpoint::sharded() const { return impl_->set.sharded; }
size_t Checkpoint::num_shards() const { return impl_->set.files.size(); }
bool Checkpoint::lm_head_tied() const { return impl_->desc.tie_word_embeddings; }
uint64_t Checkpoint::total_bytes() const { return impl_->set.total_bytes; }
const std::vector<std::string>& Checkpoint::warnings() const { return impl_->set.warnings; }

MatrixView Checkpoint::weight(TensorRole role, int layer, int expert) const {
  const ModelDesc& d = impl_->desc;
  if (role_has_layer(role) && (layer < 0 || layer >= d.layers))
    fail("{}: layer {} out of range (the model has {} layers)", impl_->dir.string(), layer, d.layers);
  if (!role_has_layer(role)) layer = -1;
  if (role_has_expert(role)) {
    if (expert < 0 || expert >= d.num_experts)
      fail("{}: expert {} out of range (the model has {} experts)", impl_->dir.string(), expert,
           d.num_experts);
  } else {
    expert = -1;
  }
  if (role == TensorRole::LmHead && d.tie_word_embeddings) role = TensorRole::Embed;
  const bool fused = impl_->layout == ExpertLayout::Fused;
  if (!role_has_expert(role) || !fused) return matrix_of(impl_->get(role, layer, expert));

  // A slab of a fused tensor: gate_up [E, 2I, H] (gate rows first), down [E, H, I].
  const int64_t I = d.expert_ffn, H = d.hidden;
  const bool down = role == TensorRole::ExpertDown;
  const TensorView& v = impl_->get(down ? TensorRole::FusedDown : TensorRole::FusedGateUp, layer, -1);
  MatrixView m;
  m.tensor = v.name;
  m.dtype = v.dtype;
  m.rows = down ? H : I;
  m.cols = down ? I : H;
  m.row_stride = m.cols;
  int64_t first = down ? int64_t(expert) * H * I : int64_t(expert) * 2 * I * H;
  if (role == TensorRole::ExpertUp) first += I * H;
  m.data = v.data + static_cast<size_t>(first) * dtype_size(v.dtype);
  return m;
}

ExpertView Checkpoint::expert(int layer, int e) const {
  return {weight(TensorRole::ExpertGate, layer, e), weight(TensorRole::ExpertUp, layer, e),
          weight(TensorRole::ExpertDown, layer, e)};
}

TensorView Checkpoint::tensor(std::string_view name) const {
  auto it = impl_->set.tensors.find(std::string(name));
  if (it == impl_->set.tensors.end())
    fail("{}: no tensor named '{}' in {}", impl_->dir.string(), name,
         impl_->set.sharded ? fmt::format("any of {} shards", impl_->set.names.size()) : impl_->set.names[0]);
  return impl_->set.view(it->second);
}

bool Checkpoint::contains(std::string_view name) const {
  return impl_->set.tensors.count(std::string(name)) != 0;
}

std::vector<CheckpointTensor> Checkpoint::tensor_table() const {
  std::vector<CheckpointTensor> out;
  const auto& set = impl_->set;
  for (size_t sh = 0; sh < set.files.size(); ++sh)
    for (const auto& e : set.files[sh]->header().tensors) {
      CheckpointTensor t;
      t.name = e.name;
      t.dtype = e.dtype;
      t.shape = e.shape;
      t.shard = set.names[sh];
      t.nbytes = e.end - e.begin;
      if (auto it = impl_->roles.find(e.name); it != impl_->roles.end()) {
        t.role = it->second.first;
        t.layer = it->second.second.first;
        t.expert = it->second.second.second;
      }
      out.push_back(std::move(t));
    }
  return out;
}

}  // namespace qllm
