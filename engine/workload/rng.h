// A small seeded random generator with its own distributions.
//
// The <random> distributions (exponential, gamma, normal) are implementation
// defined, so the same seed gives different workloads with libstdc++ and
// libc++. Everything here is written out (xoshiro256** seeded through
// splitmix64, inverse-CDF exponential, Box-Muller normal, Marsaglia-Tsang
// gamma), so a workload is a pure function of its seed on every platform.
#pragma once

#include <cmath>
#include <cstdint>

namespace qllm::workload {

class Rng {
 public:
  // `stream` separates independent sequences drawn from one user seed (arrival
  // gaps, request classes, lengths), so changing one knob (e.g. ls_fraction)
  // does not move the draws of the others.
  explicit Rng(uint64_t seed, uint64_t stream = 0) {
    uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * (stream + 1));
    for (auto& w : s_) w = splitmix64(x);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1), 53 random bits.
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }

  // Uniform in (0, 1]: safe for log().
  double uniform_open0() { return double((next() >> 11) + 1) * 0x1.0p-53; }

  // Uniform integer in [lo, hi] (inclusive), without modulo bias.
  int64_t uniform_int(int64_t lo, int64_t hi) {
    const uint64_t span = uint64_t(hi) - uint64_t(lo) + 1;
    if (span == 0) return int64_t(next());  // the full 64-bit range
    const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % span);
    uint64_t r = next();
    while (r >= limit) r = next();
    return int64_t(uint64_t(lo) + r % span);
  }

  // Exponential with the given rate (mean 1 / rate).
  double exponential(double rate) { return -std::log(uniform_open0()) / rate; }

  // Standard normal (Box-Muller; one of the pair is used).
  double normal() {
    const double u1 = uniform_open0();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  // Gamma(shape k, scale theta): mean k * theta, CV 1 / sqrt(k).
  double gamma(double shape, double scale) {
    if (shape < 1.0) {
      // Gamma(k) = Gamma(k + 1) * U^(1/k) (Marsaglia-Tsang, section 6).
      const double u = uniform_open0();
      return gamma(shape + 1.0, scale) * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x = 0;
      double v = 0;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = uniform_open0();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v * scale;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v * scale;
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  uint64_t s_[4];
};

}  // namespace qllm::workload
