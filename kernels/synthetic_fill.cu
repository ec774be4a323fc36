// Device fill of synthetic weights (see synthetic_fill.h). One thread writes
// 16 bytes (8 bf16 or 4 fp32 values) per step of a grid-stride loop; the up to
// (16 / element size - 1) elements before the first 16-byte boundary and after
// the last one are written one by one by the first threads. Compute-bound: one
// splitmix64 per element.
#include "kernels/synthetic_fill.h"

#include "kernels/cuda_check.h"

#include <algorithm>

namespace qllm::cuda {
namespace {

template <typename T>
struct Elem;

template <>
struct Elem<__nv_bfloat16> {
  using Bits = uint16_t;
  __device__ static Bits bits(float v) {
    const __nv_bfloat16_raw r = __float2bfloat16_rn(v);  // round to nearest even
    return r.x;
  }
};

template <>
struct Elem<float> {
  using Bits = uint32_t;
  __device__ static Bits bits(float v) { return __float_as_uint(v); }
};

template <typename T>
__global__ void synth_fill_kernel(T* out, uint64_t n, synth::SynthInit init, uint64_t first,
                                  uint64_t head, uint64_t chunks) {
  using E = Elem<T>;
  using Bits = typename E::Bits;
  constexpr int kVec = 16 / int(sizeof(T));
  Bits* raw = reinterpret_cast<Bits*>(out);
  const uint64_t tid = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;

  // Unaligned head and tail, fewer than kVec elements each.
  const uint64_t tail_start = head + chunks * kVec;
  if (tid < head) raw[tid] = E::bits(synth::synth_value(init, first + tid));
  if (tid < n - tail_start) raw[tail_start + tid] = E::bits(synth::synth_value(init, first + tail_start + tid));

  uint4* vec = reinterpret_cast<uint4*>(out + head);
  for (uint64_t c = tid; c < chunks; c += stride) {
    const uint64_t base = first + head + c * kVec;
    Bits b[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) b[j] = E::bits(synth::synth_value(init, base + uint64_t(j)));
    uint32_t w[4];
    if constexpr (kVec == 8) {
#pragma unroll
      for (int q = 0; q < 4; ++q) w[q] = uint32_t(b[2 * q]) | (uint32_t(b[2 * q + 1]) << 16);
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q) w[q] = b[q];
    }
    vec[c] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

template <typename T>
void fill(T* out, uint64_t n, const synth::SynthInit& init, uint64_t first, cudaStream_t stream) {
  if (n == 0) return;
  constexpr uint64_t kVec = 16 / sizeof(T);
  // Elements before the first 16-byte boundary (out is element-aligned).
  const uint64_t misalign = reinterpret_cast<uintptr_t>(out) % 16;
  const uint64_t head = std::min<uint64_t>(misalign == 0 ? 0 : (16 - misalign) / sizeof(T), n);
  const uint64_t chunks = (n - head) / kVec;
  // head and tail need fewer than kVec threads; the vector part up to 8192
  // blocks, then the grid-stride loop.
  constexpr int kThreads = 256;
  const uint64_t want = std::max<uint64_t>((chunks + kThreads - 1) / kThreads, 1);
  const unsigned blocks = unsigned(std::min<uint64_t>(want, 8192));
  synth_fill_kernel<T><<<blocks, kThreads, 0, stream>>>(out, n, init, first, head, chunks);
  QLLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void synthetic_fill_bf16(__nv_bfloat16* out, uint64_t n, const synth::SynthInit& init, uint64_t first,
                         cudaStream_t stream) {
  fill(out, n, init, first, stream);
}

void synthetic_fill_f32(float* out, uint64_t n, const synth::SynthInit& init, uint64_t first,
                        cudaStream_t stream) {
  fill(out, n, init, first, stream);
}

}  // namespace qllm::cuda
