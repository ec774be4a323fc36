// Tensor roles and the checkpoint names of each role, per architecture.
//
// Every weight of a model has a role (what it is), a layer and, for expert
// weights, an expert. The naming table that maps (role, layer, expert) to the
// name in a Hugging Face safetensors file lives in tensor_names.cpp, one table
// per architecture; nothing else in qllm spells a tensor name.
//
// Shapes (H hidden, V vocab, nh heads, nkv kv heads, hd head_dim, E experts,
// I expert width, D dense-MLP width; linear weights are [out, in]):
//   Embed [V,H]  FinalNorm [H]  LmHead [V,H] (absent when tied)
//   InputNorm [H]  PostAttnNorm [H]
//   QProj [nh*hd,H]  KProj [nkv*hd,H]  VProj [nkv*hd,H]  OProj [H,nh*hd]
//   QNorm [hd] per head or [nh*hd] full width;  KNorm [hd] or [nkv*hd]
//   Router [E,H]
//   ExpertGate [I,H]  ExpertUp [I,H]  ExpertDown [H,I]       (per-expert layout)
//   FusedGateUp [E,2I,H] (gate rows first)  FusedDown [E,H,I] (fused layout)
//   DenseGate [D,H]  DenseUp [D,H]  DenseDown [H,D]           (dense layers)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

enum class Arch : uint8_t { Mixtral, Qwen3Moe, Olmoe };

// "mixtral", "qwen3_moe", "olmoe" (the Hugging Face model_type).
std::string_view arch_name(Arch a);
// "MixtralForCausalLM", ... (the Hugging Face architectures[0]).
std::string_view arch_class_name(Arch a);
// Accepts a model_type or an architectures[] class name; false when unknown.
bool parse_arch(std::string_view s, Arch& out);
// "MixtralForCausalLM (mixtral), ..." for error messages.
std::string supported_archs();

// How expert weights are stored in a checkpoint.
enum class ExpertLayout : uint8_t {
  PerExpert,  // one [I,H]/[I,H]/[H,I] triple per expert
  Fused,      // gate_up_proj [E,2I,H] and down_proj [E,H,I] per layer
};
std::string_view layout_name(ExpertLayout l);  // "per-expert", "fused"

enum class TensorRole : uint8_t {
  Embed, FinalNorm, LmHead,
  InputNorm, PostAttnNorm,
  QProj, KProj, VProj, OProj, QNorm, KNorm,
  Router,
  ExpertGate, ExpertUp, ExpertDown,
  FusedGateUp, FusedDown,
  DenseGate, DenseUp, DenseDown,
};
inline constexpr int kNumTensorRoles = 20;
std::string_view role_name(TensorRole r);  // "embed", "q_proj", "expert_gate", ...

// True for roles indexed by layer (everything except Embed, FinalNorm, LmHead).
bool role_has_layer(TensorRole r);
// True for ExpertGate/Up/Down (indexed by layer and expert).
bool role_has_expert(TensorRole r);

// Maps (role, layer, expert) to names for one architecture. Cheap to copy.
class TensorNames {
 public:
  TensorNames() = default;
  explicit TensorNames(Arch arch);

  // The name a writer uses in `layout` (the router of Mixtral moves from
  // block_sparse_moe. to mlp. in the fused layout, as transformers names it).
  // `layer` is ignored for global roles, `expert` for non-expert roles.
  std::string name(TensorRole r, int layer = -1, int expert = -1,
                   ExpertLayout layout = ExpertLayout::PerExpert) const;
  // Every name under which a reader accepts the tensor, preferred first.
  std::vector<std::string> accepted(TensorRole r, int layer = -1, int expert = -1,
                                    ExpertLayout layout = ExpertLayout::PerExpert) const;

  std::string embed() const { return name(TensorRole::Embed); }
  std::string final_norm() const { return name(TensorRole::FinalNorm); }
  std::string lm_head() const { return name(TensorRole::LmHead); }
  std::string input_norm(int l) const { return name(TensorRole::InputNorm, l); }
  std::string post_attn_norm(int l) const { return name(TensorRole::PostAttnNorm, l); }
  std::string q_proj(int l) const { return name(TensorRole::QProj, l); }
  std::string k_proj(int l) const { return name(TensorRole::KProj, l); }
  std::string v_proj(int l) const { return name(TensorRole::VProj, l); }
  std::string o_proj(int l) const { return name(TensorRole::OProj, l); }
  std::string q_norm(int l) const { return name(TensorRole::QNorm, l); }
  std::string k_norm(int l) const { return name(TensorRole::KNorm, l); }
  std::string router(int l) const { return name(TensorRole::Router, l); }
  std::string expert_gate(int l, int e) const { return name(TensorRole::ExpertGate, l, e); }
  std::string expert_up(int l, int e) const { return name(TensorRole::ExpertUp, l, e); }
  std::string expert_down(int l, int e) const { return name(TensorRole::ExpertDown, l, e); }
  std::string fused_gate_up(int l) const { return name(TensorRole::FusedGateUp, l); }
  std::string fused_down(int l) const { return name(TensorRole::FusedDown, l); }
  std::string dense_gate(int l) const { return name(TensorRole::DenseGate, l); }
  std::string dense_up(int l) const { return name(TensorRole::DenseUp, l); }
  std::string dense_down(int l) const { return name(TensorRole::DenseDown, l); }

 private:
  Arch arch_ = Arch::Mixtral;
};

// One weight a model needs: the unit that checkpoint validation, parameter
// counts and synthetic checkpoints iterate over.
struct TensorSpec {
  std::string name;             // as written in `layout`
  std::vector<std::string> accepted;  // names a reader accepts (name first)
  std::string key;              // layout-independent identity: the per-expert-layout
                                // name (fused tensors: the fused name)
  TensorRole role = TensorRole::Embed;
  int layer = -1;   // -1 for global tensors
  int expert = -1;  // -1 unless per-expert
  std::vector<int64_t> shape;
  int64_t numel() const;
};

}  // namespace qllm
