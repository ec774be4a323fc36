// Helpers for GPU op tests (host C++; include after tests/gpu_test_util.h):
//
//   DeviceBuffer<T>   cudaMalloc'd array with upload/download/poison
//   Stream            a non-default stream (graph capture needs one)
//   CapturedGraph     launches recorded on a stream, captured into a graph
//                     instantiated for device launch and uploaded, as the
//                     engine's work-unit graphs are; replayed from the host
//   Rng               seeded inputs: random_values never returns zeros
//   bf16              host values as uint16_t bits (engine/common/dtype.h);
//                     bf16_ptr() gives the device view
//   all_close         every element within |got - want| <= abs + rel * |want|
//   bits_equal        bit-for-bit equality (poisoned bytes, exact copies)
//
// Poison: outputs are filled with kPoisonByte (0xFF: NaN in fp32 and bf16,
// -1 in int32) or another byte before a run, so that an element the kernel
// should have written but did not shows as NaN, and one it should not have
// touched must still hold the poison bits.
#pragma once

#include "engine/common/dtype.h"
#include "kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace qllm::test {

inline constexpr uint8_t kPoisonByte = 0xFF;

// ---- device memory --------------------------------------------------------

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0) QLLM_CUDA_CHECK(cudaMalloc(&p_, bytes()));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

  // Copies host values into the first host.size() elements. Synchronous: a
  // copy from pageable memory may return before its DMA lands, and work on a
  // non-blocking stream does not wait for the legacy stream.
  void upload(const std::vector<T>& host) {
    if (host.size() > n_)
      throw std::invalid_argument("upload of " + std::to_string(host.size()) + " elements into a buffer of " +
                                  std::to_string(n_));
    if (!host.empty())
      QLLM_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> host(n_);
    if (n_ > 0) QLLM_CUDA_CHECK(cudaMemcpy(host.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    return host;
  }
  // Every byte set to `byte` (synchronous).
  void poison(uint8_t byte = kPoisonByte) {
    if (n_ > 0) QLLM_CUDA_CHECK(cudaMemset(p_, byte, bytes()));
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// bf16 tensors live on the host as uint16_t bits.
inline __nv_bfloat16* bf16_ptr(const DeviceBuffer<uint16_t>& b) {
  return reinterpret_cast<__nv_bfloat16*>(b.get());
}

// An int32 device scalar (row counts, error flags).
inline DeviceBuffer<int32_t> device_int(int32_t v) { return DeviceBuffer<int32_t>(std::vector<int32_t>{v}); }

inline int32_t read_int(const DeviceBuffer<int32_t>& b, size_t i = 0) { return b.download().at(i); }

inline void write_int(DeviceBuffer<int32_t>& b, int32_t v) { b.upload({v}); }

// A value of T whose every byte is `byte`.
template <typename T>
T poison_value(uint8_t byte = kPoisonByte) {
  T v;
  std::memset(&v, byte, sizeof(T));
  return v;
}

// ---- streams and graphs ---------------------------------------------------

class Stream {
 public:
  Stream() { QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void sync() const { QLLM_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

class CapturedGraph {
 public:
  // Captures what `record` launches on `stream` (global capture mode: a
  // launcher that allocates or synchronises makes the capture fail), then
  // instantiates it for device launch and uploads it.
  CapturedGraph(cudaStream_t stream, const std::function<void(cudaStream_t)>& record) {
    QLLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    record(stream);
    QLLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph_));
    QLLM_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &nodes_));
    QLLM_CUDA_CHECK(cudaGraphInstantiateWithFlags(&exec_, graph_, cudaGraphInstantiateFlagDeviceLaunch));
    QLLM_CUDA_CHECK(cudaGraphUpload(exec_, stream));
    QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  ~CapturedGraph() {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
  }
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  size_t nodes() const { return nodes_; }
  // Launches from the host and waits for it to finish.
  void replay(cudaStream_t stream) const {
    QLLM_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
    QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  size_t nodes_ = 0;
};

// ---- inputs ---------------------------------------------------------------

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  // Uniform in [lo, hi).
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_); }
  // Uniform integer in [lo, hi].
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_); }
  bool coin() { return (g_() & 1u) != 0; }
  std::mt19937_64& engine() { return g_; }

 private:
  std::mt19937_64 g_;
};

// n values with magnitude in [0.05, 1) * scale and a random sign: never zero,
// so a kernel that writes zeros (or skips a row of zeroed memory) is seen.
inline std::vector<float> random_values(Rng& rng, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = (rng.coin() ? scale : -scale) * rng.uniform(0.05f, 1.0f);
  return v;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// Random bf16 values (never zero) and the same values as fp32.
struct Bf16Values {
  std::vector<uint16_t> bits;
  std::vector<float> f32;
};
inline Bf16Values random_bf16(Rng& rng, size_t n, float scale = 1.0f) {
  Bf16Values r;
  r.bits = to_bf16(random_values(rng, n, scale));
  r.f32 = from_bf16(r.bits);
  return r;
}

// ---- comparisons ----------------------------------------------------------

struct Tolerance {
  double rel = 0.0;
  double abs = 0.0;
};
// fp32 results computed in a different order than the CPU reference.
inline constexpr Tolerance kF32Tol{1e-5, 1e-6};
// A bf16 output rounded once from an fp32 value close to the reference: the
// rounding moves a value by at most half an ulp, 2^-8 (0.39%) of it, so 4e-3
// leaves room for fp32 differences of about 1e-4 relative and no more.
inline constexpr Tolerance kBf16Tol{4e-3, 1e-5};

namespace detail {
inline void report(std::ostringstream& os, size_t& bad, size_t i, double g, double w) {
  if (++bad <= 8) os << "\n  [" << i << "] got " << g << ", want " << w;
}
}  // namespace detail

// Every element: finite got and |got - want| <= abs + rel * |want|.
inline ::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& want,
                                            Tolerance tol, const std::string& what) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values, want " << want.size();
  std::ostringstream os;
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i], err = std::fabs(g - w);
    const bool ok = std::isfinite(g) && err <= tol.abs + tol.rel * std::fabs(w);
    if (std::isfinite(g)) worst = std::max(worst, err / (tol.abs + tol.rel * std::fabs(w)));
    if (!ok) detail::report(os, bad, i, g, w);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " values out of tolerance (rel " << tol.rel << ", abs " << tol.abs
                                       << "; worst " << worst << "x the bound)" << os.str();
}

// Bit-for-bit equality of every element.
template <typename T>
::testing::AssertionResult bits_equal(const std::vector<T>& got, const std::vector<T>& want,
                                      const std::string& what) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values, want " << want.size();
  std::ostringstream os;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if constexpr (std::is_arithmetic_v<T>)
        detail::report(os, bad, i, double(got[i]), double(want[i]));
      else
        ++bad;
    }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " values differ"
                                       << os.str();
}

// Elements [begin, end) of v.
template <typename T>
std::vector<T> slice(const std::vector<T>& v, size_t begin, size_t end) {
  return std::vector<T>(v.begin() + std::ptrdiff_t(begin), v.begin() + std::ptrdiff_t(end));
}

// Columns [c0, c1) of rows [r0, r1) of a row-major matrix with row stride ld.
template <typename T>
std::vector<T> block(const std::vector<T>& v, size_t ld, size_t r0, size_t r1, size_t c0, size_t c1) {
  std::vector<T> out;
  out.reserve((r1 - r0) * (c1 - c0));
  for (size_t r = r0; r < r1; ++r)
    for (size_t c = c0; c < c1; ++c) out.push_back(v[r * ld + c]);
  return out;
}

}  // namespace qllm::test
