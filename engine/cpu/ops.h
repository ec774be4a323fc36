// CPU reference ops in fp32. Each is the specification its CUDA twin in
// kernels/ is tested against. Shapes are row-major; linear weights are
// [out, in] as in Hugging Face checkpoints.
#pragma once

#include <cstdint>
#include <span>

namespace qllm::cpu {

// y[t, o] = sum_i x[t, i] * w[o, i]       x [T, in], w [out, in], y [T, out]
// Rows of y are split over `threads` (0: the process default).
void linear(const float* x, const float* w, float* y, int64_t T, int64_t in, int64_t out);

// y = x / sqrt(mean(x^2) + eps) * w, over the last `n` elements, `rows` rows.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);

// Rotary embedding, Hugging Face "rotate_half" form (not interleaved): for each
// head of size d and i < d/2, with a = pos * theta^(-2i/d):
//   x'[i]       = x[i] cos a - x[i + d/2] sin a
//   x'[i + d/2] = x[i + d/2] cos a + x[i] sin a
// x is [heads, d] for one token.
void rope(float* x, int heads, int d, int64_t pos, double theta);

// In place softmax over n values.
void softmax(float* x, int64_t n);

inline float silu(float v);

// Process-wide thread count for the CPU ops (0 = hardware concurrency).
void set_num_threads(int n);
int num_threads();

}  // namespace qllm::cpu

#include <cmath>
inline float qllm::cpu::silu(float v) { return v / (1.0f + std::exp(-v)); }
