// Device helpers shared by the kernels in this folder (included by .cu files
// only): 16-byte vector loads and stores of 8 elements converted to fp32,
// deterministic warp and block sums, the per-step row count, alignment tests.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace qllm::cuda::dev {

// Rows to process this step: *d_rows clamped to [0, cap].
__device__ __forceinline__ int active_rows(const int32_t* d_rows, int cap) {
  const int n = *d_rows;
  return n < 0 ? 0 : (n > cap ? cap : n);
}

// 8 consecutive elements at p (16-byte aligned; fp32 takes two 16-byte
// accesses) to fp32 and back. bf16 stores round to nearest even.
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float (&v)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

__device__ __forceinline__ void store8(__nv_bfloat16* p, const float (&v)[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

__device__ __forceinline__ void store8(float* p, const float (&v)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

// Sum over the 32 lanes of a full warp; every lane gets the same value, in the
// same order of additions on every run.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the same value. Every thread of the block must call it.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float part[32];
  v = warp_sum(v);
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  const int nw = int(blockDim.x) >> 5;
  float s = 0.0f;
  for (int w = 0; w < nw; ++w) s += part[w];
  __syncthreads();  // part is free again when the next call writes it
  return s;
}

}  // namespace qllm::cuda::dev

namespace qllm::cuda {

// Host side: whether p may be read with 16-byte accesses.
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace qllm::cuda
