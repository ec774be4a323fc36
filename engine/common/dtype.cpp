#include "engine/common/dtype.h"

#include "engine/common/error.h"

#include <array>
#include <cmath>

namespace qllm {
namespace {

struct DTypeInfo {
  DType t;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 15> kInfo{{
    {DType::BOOL, "BOOL", 1},   {DType::U8, "U8", 1},     {DType::I8, "I8", 1},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I16, "I16", 2},     {DType::U16, "U16", 2},   {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},   {DType::I32, "I32", 4},   {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},     {DType::F64, "F64", 8},   {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
}};

}  // namespace

size_t dtype_size(DType t) { return kInfo[size_t(t)].size; }
std::string_view dtype_name(DType t) { return kInfo[size_t(t)].name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.name == name) return i.t;
  return std::nullopt;
}

std::optional<DType> parse_torch_dtype(std::string_view name) {
  if (name == "bfloat16") return DType::BF16;
  if (name == "float16" || name == "half") return DType::F16;
  if (name == "float32" || name == "float") return DType::F32;
  return std::nullopt;
}

bool is_weight_dtype(DType t) { return t == DType::BF16 || t == DType::F16 || t == DType::F32; }

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: value = man * 2^-24
      float f = std::ldexp(float(man), -24);
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (au >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow -> inf
  if (au < 0x38800000u) {                                  // subnormal or zero in f16
    float a;
    std::memcpy(&a, &au, 4);
    // value / 2^-24 rounded to nearest even
    const float scaled = a * 16777216.0f;
    return uint16_t(sign | uint16_t(std::nearbyint(scaled)));
  }
  uint32_t r = au + 0xfffu + ((au >> 13) & 1u);  // round to nearest even at bit 13
  return uint16_t(sign | uint16_t(((r >> 13) - (112u << 10)) & 0xffffu));
}

void to_f32(DType t, const void* src, float* dst, size_t n) {
  const auto* b = static_cast<const unsigned char*>(src);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, b, n * 4);
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    default:
      fail("cannot convert {} tensor data to float32", dtype_name(t));
  }
}

void from_f32(DType t, const float* src, void* dst, size_t n) {
  auto* b = static_cast<unsigned char*>(dst);
  switch (t) {
    case DType::F32:
      std::memcpy(b, src, n * 4);
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(b + 2 * i, &h, 2);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(b + 2 * i, &h, 2);
      }
      return;
    default:
      fail("cannot write float32 values as {}", dtype_name(t));
  }
}

}  // namespace qllm
