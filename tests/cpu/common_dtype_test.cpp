// dtype names and fp32 conversions (BF16 and F16 rounding, specials).
#include "engine/common/dtype.h"
#include "engine/common/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace qllm;

TEST(DType, NamesRoundTrip) {
  for (int i = 0; i <= int(DType::U64); ++i) {
    const auto t = DType(i);
    EXPECT_EQ(parse_dtype(dtype_name(t)), t);
  }
  EXPECT_FALSE(parse_dtype("FP32").has_value());
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(parse_torch_dtype("bfloat16"), DType::BF16);
  EXPECT_FALSE(parse_torch_dtype("int8").has_value());
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly half-way between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  // 1 + 3*2^-8 is half-way between 1+2^-7 (odd) and 1+2^-6 (even).
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-INFINITY)), -INFINITY);
}

TEST(DType, F16ExactValuesAndSpecials) {
  const float exact[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f /* min normal */,
                         5.960464477539063e-08f /* min subnormal */, 0.333251953125f};
  for (float f : exact) EXPECT_EQ(f16_to_f32(f32_to_f16(f)), f) << f;
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(f16_to_f32(0x7c00), INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(DType, RandomRoundTripWithinHalfUlp) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (int i = 0; i < 10000; ++i) {
    const float f = u(rng);
    const float b = bf16_to_f32(f32_to_bf16(f));
    EXPECT_LE(std::fabs(b - f), std::fabs(f) * (1.0f / 256) + 1e-30f) << f;
    const float h = f16_to_f32(f32_to_f16(f));
    EXPECT_LE(std::fabs(h - f), std::max(std::fabs(f) * (1.0f / 2048), 3e-8f)) << f;
  }
}

TEST(DType, BulkConversion) {
  const std::vector<float> src = {0.5f, -1.25f, 3.0f, 1e-3f};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    std::vector<unsigned char> buf(src.size() * dtype_size(t) + 1);
    from_f32(t, src.data(), buf.data() + 1, src.size());  // unaligned on purpose
    std::vector<float> back(src.size());
    to_f32(t, buf.data() + 1, back.data(), src.size());
    for (size_t i = 0; i < src.size(); ++i) EXPECT_NEAR(back[i], src[i], 1e-2 * std::fabs(src[i]));
  }
  float out = 0;
  const int32_t x = 1;
  EXPECT_THROW(to_f32(DType::I32, &x, &out, 1), Error);
}
