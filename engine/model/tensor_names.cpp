// The naming tables: one per architecture. Format strings take the layer
// first, then the expert.
#include "engine/model/tensor_names.h"

#include "engine/common/error.h"

#include <fmt/format.h>

#include <array>

namespace qllm {
namespace {

struct NamingTable {
  Arch arch;
  std::string_view model_type;
  std::string_view class_name;
  // Indexed by TensorRole; per-expert layout.
  std::array<std::string_view, kNumTensorRoles> names;
  // Router in the fused layout (transformers renames Mixtral's
  // block_sparse_moe. to mlp. when it fuses the experts).
  std::string_view router_fused;
  // Names also accepted by a reader (Mixtral: either prefix).
  std::string_view router_alt;
  std::string_view fused_gate_up_alt, fused_down_alt;
};

constexpr std::string_view kEmbed = "model.embed_tokens.weight";
constexpr std::string_view kNorm = "model.norm.weight";
constexpr std::string_view kHead = "lm_head.weight";
constexpr std::string_view kInNorm = "model.layers.{}.input_layernorm.weight";
constexpr std::string_view kPostNorm = "model.layers.{}.post_attention_layernorm.weight";
constexpr std::string_view kQ = "model.layers.{}.self_attn.q_proj.weight";
constexpr std::string_view kK = "model.layers.{}.self_attn.k_proj.weight";
constexpr std::string_view kV = "model.layers.{}.self_attn.v_proj.weight";
constexpr std::string_view kO = "model.layers.{}.self_attn.o_proj.weight";
constexpr std::string_view kQNorm = "model.layers.{}.self_attn.q_norm.weight";
constexpr std::string_view kKNorm = "model.layers.{}.self_attn.k_norm.weight";
constexpr std::string_view kMlpRouter = "model.layers.{}.mlp.gate.weight";
constexpr std::string_view kFusedGateUp = "model.layers.{}.mlp.experts.gate_up_proj";
constexpr std::string_view kFusedDown = "model.layers.{}.mlp.experts.down_proj";
constexpr std::string_view kDenseGate = "model.layers.{}.mlp.gate_proj.weight";
constexpr std::string_view kDenseUp = "model.layers.{}.mlp.up_proj.weight";
constexpr std::string_view kDenseDown = "model.layers.{}.mlp.down_proj.weight";

constexpr NamingTable kMixtral{
    Arch::Mixtral, "mixtral", "MixtralForCausalLM",
    {kEmbed, kNorm, kHead, kInNorm, kPostNorm, kQ, kK, kV, kO,
     "", "",  // no QK norm
     "model.layers.{}.block_sparse_moe.gate.weight",
     "model.layers.{}.block_sparse_moe.experts.{}.w1.weight",
     "model.layers.{}.block_sparse_moe.experts.{}.w3.weight",
     "model.layers.{}.block_sparse_moe.experts.{}.w2.weight",
     kFusedGateUp, kFusedDown,
     "", "", ""},  // no dense layers
    kMlpRouter,
    kMlpRouter,
    "model.layers.{}.block_sparse_moe.experts.gate_up_proj",
    "model.layers.{}.block_sparse_moe.experts.down_proj",
};

constexpr std::array<std::string_view, kNumTensorRoles> kQwenStyle{
    kEmbed, kNorm, kHead, kInNorm, kPostNorm, kQ, kK, kV, kO, kQNorm, kKNorm,
    kMlpRouter,
    "model.layers.{}.mlp.experts.{}.gate_proj.weight",
    "model.layers.{}.mlp.experts.{}.up_proj.weight",
    "model.layers.{}.mlp.experts.{}.down_proj.weight",
    kFusedGateUp, kFusedDown,
    kDenseGate, kDenseUp, kDenseDown};

constexpr NamingTable kQwen3Moe{Arch::Qwen3Moe, "qwen3_moe", "Qwen3MoeForCausalLM", kQwenStyle,
                                kMlpRouter, "", "", ""};
constexpr NamingTable kOlmoe{Arch::Olmoe, "olmoe", "OlmoeForCausalLM", kQwenStyle,
                             kMlpRouter, "", "", ""};

constexpr std::array<const NamingTable*, 3> kTables{&kMixtral, &kQwen3Moe, &kOlmoe};

const NamingTable& table(Arch a) { return *kTables[size_t(a)]; }

constexpr std::array<std::string_view, kNumTensorRoles> kRoleNames{
    "embed", "final_norm", "lm_head", "input_norm", "post_attn_norm",
    "q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm", "router",
    "expert_gate", "expert_up", "expert_down", "fused_gate_up", "fused_down",
    "dense_gate", "dense_up", "dense_down"};

std::string format_name(std::string_view f, TensorRole r, int layer, int expert) {
  if (!role_has_layer(r)) return std::string(f);
  if (role_has_expert(r)) return fmt::format(fmt::runtime(f), layer, expert);
  return fmt::format(fmt::runtime(f), layer);
}

}  // namespace

std::string_view arch_name(Arch a) { return table(a).model_type; }
std::string_view arch_class_name(Arch a) { return table(a).class_name; }

bool parse_arch(std::string_view s, Arch& out) {
  for (const auto* t : kTables)
    if (s == t->model_type || s == t->class_name) {
      out = t->arch;
      return true;
    }
  return false;
}

std::string supported_archs() {
  std::string s;
  for (const auto* t : kTables) {
    if (!s.empty()) s += ", ";
    s += fmt::format("{} ({})", t->class_name, t->model_type);
  }
  return s;
}

std::string_view layout_name(ExpertLayout l) {
  return l == ExpertLayout::Fused ? "fused" : "per-expert";
}

std::string_view role_name(TensorRole r) { return kRoleNames[size_t(r)]; }

bool role_has_layer(TensorRole r) {
  return r != TensorRole::Embed && r != TensorRole::FinalNorm && r != TensorRole::LmHead;
}

bool role_has_expert(TensorRole r) {
  return r == TensorRole::ExpertGate || r == TensorRole::ExpertUp || r == TensorRole::ExpertDown;
}

TensorNames::TensorNames(Arch arch) : arch_(arch) {}

std::string TensorNames::name(TensorRole r, int layer, int expert, ExpertLayout layout) const {
  const NamingTable& t = table(arch_);
  std::string_view f = t.names[size_t(r)];
  if (r == TensorRole::Router && layout == ExpertLayout::Fused) f = t.router_fused;
  QLLM_CHECK_MSG(!f.empty(), "{} has no tensor of role {}", t.class_name, role_name(r));
  return format_name(f, r, layer, expert);
}

std::vector<std::string> TensorNames::accepted(TensorRole r, int layer, int expert,
                                               ExpertLayout layout) const {
  const NamingTable& t = table(arch_);
  std::vector<std::string> out{name(r, layer, expert, layout)};
  auto add = [&](std::string_view f) {
    if (f.empty()) return;
    std::string n = format_name(f, r, layer, expert);
    for (const auto& o : out)
      if (o == n) return;
    out.push_back(std::move(n));
  };
  if (r == TensorRole::Router) {
    add(t.names[size_t(r)]);
    add(t.router_alt);
  }
  if (r == TensorRole::FusedGateUp) add(t.fused_gate_up_alt);
  if (r == TensorRole::FusedDown) add(t.fused_down_alt);
  return out;
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace qllm
