// qllm_bench_copy: device-to-device copy bandwidth, the memory ceiling that
// decode-step figures are reported against (BENCH.md).
//
//   qllm_bench_copy [--json] [--iters N] [--warmup N]
//
// Two methods, two sizes (256 MiB and 1 GiB, far larger than any L2, so every
// byte comes from and goes to device memory): cudaMemcpyAsync device to device,
// and a copy kernel (16-byte loads and stores, four independent loads in flight
// per thread, a grid of as many resident blocks as the device holds). Each
// (method, size) runs `warmup` times untimed, then `iters` times, each timed
// alone with CUDA events; the median is reported, with min and max. The
// destination is cleared before each method and compared with the source
// after it.
//
// GB/s counts bytes read plus bytes written: copying B bytes moves 2·B bytes,
// GB/s = 2·B / time / 1e9 (1 GB = 1e9 bytes). Exits with code 2 and a message
// when there is no CUDA device.
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

__global__ void fill_pattern(uint4* p, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const auto h = uint32_t(i * 2654435761u);
    p[i] = make_uint4(h ^ 0x9e3779b9u, h + 1u, ~h, h * 3u + 7u);  // never all zero
  }
}

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

struct Result {
  std::string method;
  size_t bytes = 0;
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double gbps(double ms) const { return 2.0 * double(bytes) / (ms * 1e-3) / 1e9; }
};

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "qllm_bench_copy: %s\nusage: qllm_bench_copy [--json] [--iters N] [--warmup N]\n", why);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int iters = 20, warmup = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if ((a == "--iters" || a == "--warmup") && i + 1 < argc) {
      const int v = std::atoi(argv[++i]);
      if (v < (a == "--iters" ? 1 : 0)) usage(("bad value for " + a).c_str());
      (a == "--iters" ? iters : warmup) = v;
    } else if (a == "-h" || a == "--help") {
      usage("device-to-device copy bandwidth");
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }

  const auto report = qllm::cuda::query_devices();
  if (report.devices.empty()) {
    std::fprintf(stderr, "qllm_bench_copy: no CUDA device (%s); nothing measured\n", report.why_none.c_str());
    return 2;
  }
  const auto& dev = report.devices[0];
  QLLM_CUDA_CHECK(cudaSetDevice(dev.index));
  int l2_bytes = 0;
  QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev.index));

  const std::vector<size_t> sizes = {size_t(256) << 20, size_t(1) << 30};
  const size_t max_bytes = *std::max_element(sizes.begin(), sizes.end());
  void *src = nullptr, *dst = nullptr;
  unsigned long long* bad = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&src, max_bytes));
  QLLM_CUDA_CHECK(cudaMalloc(&dst, max_bytes));
  QLLM_CUDA_CHECK(cudaMalloc(&bad, sizeof(unsigned long long)));
  cudaStream_t s = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  QLLM_CUDA_CHECK(cudaEventCreate(&e0));
  QLLM_CUDA_CHECK(cudaEventCreate(&e1));

  int blocks_per_sm = 0;
  constexpr int kThreads = 256;
  QLLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, copy_vec16, kThreads, 0));
  const int grid = std::max(1, blocks_per_sm) * dev.sm_count;

  fill_pattern<<<grid, kThreads, 0, s>>>(static_cast<uint4*>(src), max_bytes / 16);
  QLLM_CUDA_CHECK_LAUNCH();

  const char* methods[] = {"cudaMemcpyAsync", "copy_kernel_vec16"};
  std::vector<Result> results;
  bool all_ok = true;
  for (size_t bytes : sizes) {
    for (int m = 0; m < 2; ++m) {
      auto copy = [&] {
        if (m == 0) {
          QLLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
        } else {
          copy_vec16<<<grid, kThreads, 0, s>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst),
                                               bytes / 16);
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
      if (nbad) {
        std::fprintf(stderr, "qllm_bench_copy: %s of %zu bytes: %llu of %zu 16-byte words differ\n", methods[m],
                     bytes, nbad, bytes / 16);
        all_ok = false;
      }
      std::sort(ms.begin(), ms.end());
      Result r;
      r.method = methods[m];
      r.bytes = bytes;
      r.median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
      r.min_ms = ms.front();
      r.max_ms = ms.back();
      results.push_back(r);
    }
  }
  double ceiling = 0;
  for (const auto& r : results)
    if (r.bytes == max_bytes) ceiling = std::max(ceiling, r.gbps(r.median_ms));

  if (json) {
    std::printf("{\n  \"benchmark\": \"copy_bandwidth\",\n  \"device\": \"%s\",\n", json_escape(dev.name).c_str());
    std::printf("  \"compute_capability\": \"%d.%d\",\n  \"sm_count\": %d,\n  \"l2_bytes\": %d,\n", dev.cc_major,
                dev.cc_minor, dev.sm_count, l2_bytes);
    std::printf("  \"counting\": \"GB/s = (bytes read + bytes written) / seconds / 1e9: a copy of B bytes counts 2B\",\n");
    std::printf("  \"warmup\": %d,\n  \"iters\": %d,\n  \"statistic\": \"median\",\n", warmup, iters);
    std::printf("  \"verified\": %s,\n  \"results\": [\n", all_ok ? "true" : "false");
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::printf("    {\"method\": \"%s\", \"bytes\": %zu, \"median_ms\": %.6f, \"min_ms\": %.6f, \"max_ms\": %.6f, "
                  "\"gbps_median\": %.2f, \"gbps_best\": %.2f}%s\n",
                  r.method.c_str(), r.bytes, r.median_ms, r.min_ms, r.max_ms, r.gbps(r.median_ms),
                  r.gbps(r.min_ms), i + 1 < results.size() ? "," : "");
    }
    std::printf("  ],\n  \"ceiling_gbps\": %.2f\n}\n", ceiling);
  } else {
    std::printf("device-to-device copy bandwidth on %s (%d SMs, L2 %d MiB)\n", dev.name.c_str(), dev.sm_count,
                l2_bytes >> 20);
    std::printf("GB/s counts bytes read + bytes written (a copy of B bytes moves 2B); median of %d runs after %d "
                "warm-up runs, CUDA events\n\n",
                iters, warmup);
    std::printf("%-20s %10s %12s %12s %12s %12s\n", "method", "size", "median ms", "GB/s median", "GB/s best",
                "GB/s worst");
    for (const auto& r : results)
      std::printf("%-20s %6zu MiB %12.4f %12.1f %12.1f %12.1f\n", r.method.c_str(), r.bytes >> 20, r.median_ms,
                  r.gbps(r.median_ms), r.gbps(r.min_ms), r.gbps(r.max_ms));
    std::printf("\nceiling (best median at %zu MiB): %.1f GB/s%s\n", max_bytes >> 20, ceiling,
                all_ok ? "" : "  (A COPY WAS WRONG: see above)");
  }

  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(s);
  cudaFree(bad);
  cudaFree(dst);
  cudaFree(src);
  return all_ok ? 0 : 1;
}
