// Seeded weights of synthetic checkpoints (the host side of synthetic_init.h):
// per-role scales and the fill callbacks that stream them into safetensors.
#include "engine/model/synthetic_weights.h"

#include "engine/common/error.h"

#include <algorithm>
#include <cmath>

namespace qllm {

synth::SynthInit synth_init(const ModelDesc& d, TensorRole role, int layer, int expert, uint64_t seed) {
  QLLM_CHECK_MSG(role != TensorRole::FusedGateUp && role != TensorRole::FusedDown,
                 "synth_init takes per-expert roles");
  const std::string key = d.names.name(role, layer, expert, ExpertLayout::PerExpert);
  synth::SynthInit p;
  p.key = synth::tensor_key(seed, key.data(), key.size());
  switch (role) {
    case TensorRole::InputNorm:
    case TensorRole::PostAttnNorm:
    case TensorRole::FinalNorm:
    case TensorRole::QNorm:
    case TensorRole::KNorm:
      p.center = 1.0f;  // norm weights near 1
      p.half_width = 1.0f / 16.0f;
      break;
    case TensorRole::Router: {
      // Router logits with a spread of about 1 (std 1/sqrt(H) per weight), so
      // that routing is decisive rather than a near-tie between experts.
      const double target = std::sqrt(3.0 / double(d.hidden));
      p.half_width = static_cast<float>(std::exp2(std::round(std::log2(target))));
      break;
    }
    default:
      p.half_width = 1.0f / 32.0f;  // uniform [-1/32, 1/32): std 0.018
      break;
  }
  return p;
}

float synth_weight(const synth::SynthInit& init, uint64_t index, DType t) {
  const float v = synth::synth_value(init, index);
  switch (t) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
    case DType::F16: return f16_to_f32(f32_to_f16(v));
    case DType::F32: return v;
    default: QLLM_CHECK_MSG(false, "synthetic weights are BF16, F16 or F32, not {}", dtype_name(t));
  }
}

SynthFill::SynthFill(const ModelDesc& d, const TensorSpec& spec, DType dtype, uint64_t seed)
    : dtype_(dtype), role_(spec.role), I_(uint64_t(d.expert_ffn)), H_(uint64_t(d.hidden)) {
  if (role_ == TensorRole::FusedGateUp) {
    for (int e = 0; e < d.num_experts; ++e) {
      inits_.push_back(synth_init(d, TensorRole::ExpertGate, spec.layer, e, seed));
      inits_.push_back(synth_init(d, TensorRole::ExpertUp, spec.layer, e, seed));
    }
  } else if (role_ == TensorRole::FusedDown) {
    for (int e = 0; e < d.num_experts; ++e)
      inits_.push_back(synth_init(d, TensorRole::ExpertDown, spec.layer, e, seed));
  } else {
    inits_.push_back(synth_init(d, spec.role, spec.layer, spec.expert, seed));
  }
}

float SynthFill::value(uint64_t flat) const {
  if (role_ == TensorRole::FusedGateUp) {
    const auto f = synth::fused_gate_up_index(flat, I_, H_);
    return synth::synth_value(inits_[size_t(2 * f.expert + f.part)], f.index);
  }
  if (role_ == TensorRole::FusedDown) {
    const auto f = synth::fused_down_index(flat, I_, H_);
    return synth::synth_value(inits_[size_t(f.expert)], f.index);
  }
  return synth::synth_value(inits_[0], flat);
}

void SynthFill::operator()(uint64_t offset, std::span<uint8_t> out) const {
  // Works for any byte range, element-aligned or not.
  constexpr uint64_t kBlock = 1024;
  const uint64_t es = dtype_size(dtype_);
  const uint64_t end = offset + out.size();
  float vals[kBlock];
  uint8_t bytes[kBlock * 4];
  for (uint64_t e = offset / es; e * es < end; e += kBlock) {
    const uint64_t n = std::min<uint64_t>(kBlock, (end + es - 1) / es - e);
    for (uint64_t i = 0; i < n; ++i) vals[i] = value(e + i);
    from_f32(dtype_, vals, bytes, static_cast<size_t>(n));
    const uint64_t lo = std::max(offset, e * es), hi = std::min(end, (e + n) * es);
    std::copy(bytes + (lo - e * es), bytes + (hi - e * es), out.begin() + static_cast<std::ptrdiff_t>(lo - offset));
  }
}

}  // namespace qllm
