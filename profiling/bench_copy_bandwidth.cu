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
// when there is no CUDA device. The measurement is bench_device.h's,
// shared with qllm_bench_model's bandwidth ceiling.
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "profiling/bench_device.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using qllm::bench::CopyRun;

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

// GB/s of a run at another of its times (min, max).
double gbps(const CopyRun& r, double ms) { return 2.0 * double(r.bytes) / (ms * 1e-3) / 1e9; }

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
  cudaStream_t s = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::vector<CopyRun> results;  // per size: cudaMemcpyAsync, then the copy kernel (bench_device.h)
  bool all_ok = true;
  for (size_t bytes : sizes) {
    const auto c = qllm::bench::measure_copy_ceiling(bytes, iters, warmup, s);
    all_ok = all_ok && c.verified;
    results.insert(results.end(), c.runs.begin(), c.runs.end());
  }
  double ceiling = 0;
  for (const auto& r : results)
    if (r.bytes == max_bytes) ceiling = std::max(ceiling, r.gbps());

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
                  r.method.c_str(), r.bytes, r.median_ms, r.min_ms, r.max_ms, r.gbps(),
                  gbps(r, r.min_ms), i + 1 < results.size() ? "," : "");
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
                  r.gbps(), gbps(r, r.min_ms), gbps(r, r.max_ms));
    std::printf("\nceiling (best median at %zu MiB): %.1f GB/s%s\n", max_bytes >> 20, ceiling,
                all_ok ? "" : "  (A COPY WAS WRONG: see above)");
  }

  cudaStreamDestroy(s);
  return all_ok ? 0 : 1;
}
