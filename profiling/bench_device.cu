// bench_device.h. qllm_bench_copy (bench_copy_bandwidth.cu) prints these
// runs, so the ceiling a model benchmark reports is the number
// qllm_bench_copy prints for the same size.
#include "profiling/bench_device.h"

#include "kernels/cuda_check.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>

namespace qllm::bench {
namespace {

__global__ void fill_pattern(uint4* p, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const auto h = uint32_t(i * 2654435761u);
    p[i] = make_uint4(h ^ 0x9e3779b9u, h + 1u, ~h, h * 3u + 7u);  // never all zero
  }
}

// 16-byte loads and stores, four independent loads in flight per thread.
__global__ void copy_vec16(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
    dst[i] = a;
    dst[i + stride] = b;
    dst[i + 2 * stride] = c;
    dst[i + 3 * stride] = d;
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

__global__ void count_mismatches(const uint4* a, const uint4* b, size_t n, unsigned long long* bad) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  unsigned long long local = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 x = a[i], y = b[i];
    local += (x.x != y.x) | (x.y != y.y) | (x.z != y.z) | (x.w != y.w);
  }
  if (local) atomicAdd(bad, local);
}

__global__ void empty_kernel() {}

}  // namespace

CopyCeiling measure_copy_ceiling(size_t bytes, int iters, int warmup, cudaStream_t s) {
  bytes = bytes / 16 * 16;
  iters = std::max(iters, 1);
  int dev = 0, sms = 0, blocks_per_sm = 0;
  QLLM_CUDA_CHECK(cudaGetDevice(&dev));
  QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  constexpr int kThreads = 256;
  QLLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, copy_vec16, kThreads, 0));
  const int grid = std::max(1, blocks_per_sm) * std::max(1, sms);

  void *src = nullptr, *dst = nullptr;
  unsigned long long* bad = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&src, bytes));
  QLLM_CUDA_CHECK(cudaMalloc(&dst, bytes));
  QLLM_CUDA_CHECK(cudaMalloc(&bad, sizeof(unsigned long long)));
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  QLLM_CUDA_CHECK(cudaEventCreate(&e0));
  QLLM_CUDA_CHECK(cudaEventCreate(&e1));
  fill_pattern<<<grid, kThreads, 0, s>>>(static_cast<uint4*>(src), bytes / 16);
  QLLM_CUDA_CHECK_LAUNCH();

  CopyCeiling out;
  const char* methods[] = {"cudaMemcpyAsync", "copy_kernel_vec16"};
  for (int m = 0; m < 2; ++m) {
    auto copy = [&] {
      if (m == 0) {
        QLLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
      } else {
        copy_vec16<<<grid, kThreads, 0, s>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), bytes / 16);
        QLLM_CUDA_CHECK_LAUNCH();
      }
    };
    QLLM_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s));
    for (int w = 0; w < warmup; ++w) copy();
    std::vector<double> ms;
    for (int it = 0; it < iters; ++it) {
      QLLM_CUDA_CHECK(cudaEventRecord(e0, s));
      copy();
      QLLM_CUDA_CHECK(cudaEventRecord(e1, s));
      QLLM_CUDA_CHECK(cudaEventSynchronize(e1));
      float t = 0;
      QLLM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
      ms.push_back(double(t));
    }
    QLLM_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(unsigned long long), s));
    count_mismatches<<<grid, kThreads, 0, s>>>(static_cast<const uint4*>(src), static_cast<const uint4*>(dst),
                                               bytes / 16, bad);
    QLLM_CUDA_CHECK_LAUNCH();
    unsigned long long nbad = 0;
    QLLM_CUDA_CHECK(cudaMemcpyAsync(&nbad, bad, sizeof(nbad), cudaMemcpyDeviceToHost, s));
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
    if (nbad)
      std::fprintf(stderr, "copy ceiling: %s of %zu bytes: %llu of %zu 16-byte words differ\n", methods[m], bytes,
                   nbad, bytes / 16);
    std::sort(ms.begin(), ms.end());
    CopyRun r;
    r.method = methods[m];
    r.bytes = bytes;
    const size_t h = ms.size() / 2;
    r.median_ms = ms.size() % 2 ? ms[h] : 0.5 * (ms[h - 1] + ms[h]);
    r.min_ms = ms.front();
    r.max_ms = ms.back();
    r.verified = nbad == 0;
    out.verified = out.verified && r.verified;
    if (r.gbps() > out.gbps) {
      out.gbps = r.gbps();
      out.method = r.method;
    }
    out.runs.push_back(r);
  }
  QLLM_CUDA_CHECK(cudaEventDestroy(e0));
  QLLM_CUDA_CHECK(cudaEventDestroy(e1));
  QLLM_CUDA_CHECK(cudaFree(bad));
  QLLM_CUDA_CHECK(cudaFree(dst));
  QLLM_CUDA_CHECK(cudaFree(src));
  return out;
}

cudaGraphExec_t empty_kernel_graph(cudaStream_t s, bool device_launch) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  QLLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  empty_kernel<<<1, 32, 0, s>>>();
  QLLM_CUDA_CHECK_LAUNCH();
  QLLM_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  const unsigned long long flags = device_launch ? static_cast<unsigned long long>(cudaGraphInstantiateFlagDeviceLaunch) : 0;
  QLLM_CUDA_CHECK(cudaGraphInstantiateWithFlags(&exec, graph, flags));
  QLLM_CUDA_CHECK(cudaGraphDestroy(graph));
  QLLM_CUDA_CHECK(cudaGraphUpload(exec, s));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
  return exec;
}

}  // namespace qllm::bench
