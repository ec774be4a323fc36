#include "engine/cpu/ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

namespace qllm::cpu {
namespace {

std::atomic<int> g_threads{0};

// Runs f(begin, end) over [0, n) split across threads; small n runs inline.
template <typename F>
void parallel_rows(int64_t n, int64_t work_per_row, F&& f) {
  const int nt = num_threads();
  const int64_t min_work = int64_t(1) << 16;  // below this a thread costs more than it saves
  int64_t chunks = std::min<int64_t>(nt, std::max<int64_t>(1, n * work_per_row / min_work));
  chunks = std::min(chunks, n);
  if (chunks <= 1) {
    f(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(size_t(chunks - 1));
  const int64_t step = (n + chunks - 1) / chunks;
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t b = c * step, e = std::min(n, b + step);
    if (b < e) pool.emplace_back([&f, b, e] { f(b, e); });
  }
  f(int64_t(0), std::min(n, step));
  for (auto& t : pool) t.join();
}

}  // namespace

void set_num_threads(int n) { g_threads = n; }

int num_threads() {
  const int n = g_threads.load();
  if (n > 0) return n;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

void linear(const float* x, const float* w, float* y, int64_t T, int64_t in, int64_t out) {
  parallel_rows(out, T * in, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      const float* wr = w + o * in;
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * in;
        // Four partial sums: vectorises without -ffast-math, deterministic order.
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t i = 0;
        for (; i + 4 <= in; i += 4) {
          s0 += xr[i] * wr[i];
          s1 += xr[i + 1] * wr[i + 1];
          s2 += xr[i + 2] * wr[i + 2];
          s3 += xr[i + 3] * wr[i + 3];
        }
        for (; i < in; ++i) s0 += xr[i] * wr[i];
        y[t * out + o] = (s0 + s1) + (s2 + s3);
      }
    }
  });
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * double(xr[i]);
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    float* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

void rope(float* x, int heads, int d, int64_t pos, double theta) {
  const int half = d / 2;
  for (int i = 0; i < half; ++i) {
    // Hugging Face computes inv_freq in fp32, then pos * inv_freq in fp32.
    const float inv_freq = float(1.0 / std::pow(theta, double(2 * i) / double(d)));
    const float a = float(pos) * inv_freq;
    const float c = std::cos(a), s = std::sin(a);
    for (int h = 0; h < heads; ++h) {
      float* xh = x + int64_t(h) * d;
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c - x1 * s;
      xh[i + half] = x1 * c + x0 * s;
    }
  }
}

void softmax(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace qllm::cpu
