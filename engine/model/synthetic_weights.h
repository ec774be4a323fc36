// Internal to make_model: the safetensors fill callback of one synthetic
// tensor (per-expert, fused or plain), built on synthetic_init.h.
#pragma once

#include "engine/model/make_model.h"

#include <span>
#include <vector>

namespace qllm {

class SynthFill {
 public:
  SynthFill(const ModelDesc& d, const TensorSpec& spec, DType dtype, uint64_t seed);
  // SafetensorsWriter::Fill: bytes [offset, offset + out.size()) of the tensor.
  void operator()(uint64_t offset, std::span<uint8_t> out) const;
  float value(uint64_t flat) const;  // before rounding to the dtype

 private:
  DType dtype_;
  TensorRole role_;
  uint64_t I_, H_;
  std::vector<synth::SynthInit> inits_;
};

}  // namespace qllm
