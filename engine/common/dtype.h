// Element types of checkpoint tensors and their conversions to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace qllm {

// All dtypes a safetensors file may hold. Weights are loaded from BF16, F16 and
// F32; the rest are recognised so that a file holding them is described, not
// rejected as malformed.
enum class DType : uint8_t {
  BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
};

// Size of one element in bytes.
size_t dtype_size(DType t);
// Name as written in safetensors headers ("BF16", "F32", ...).
std::string_view dtype_name(DType t);
// Parses a safetensors dtype name; nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name);
// Parses a torch_dtype string from config.json ("bfloat16", "float16", "float32").
std::optional<DType> parse_torch_dtype(std::string_view name);
// True for BF16, F16 and F32, the weight dtypes qllm computes with.
bool is_weight_dtype(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of type t at src (any alignment) to fp32.
void to_f32(DType t, const void* src, float* dst, size_t n);
// Converts n fp32 values to type t (BF16, F16 or F32) at dst (any alignment).
void from_f32(DType t, const float* src, void* dst, size_t n);

}  // namespace qllm
