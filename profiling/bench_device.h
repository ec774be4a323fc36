// Device-side pieces of the benchmark programs that are not the engine's:
// the device-to-device copy ceiling, measured as qllm_bench_copy measures it
// (bench_copy_bandwidth.cu: the same two methods, timing and counting), and a
// graph of one empty kernel, the floor of a graph launch.
//
//   const auto c = bench::measure_copy_ceiling(size_t(1) << 30, 20, 3, stream);
//   fmt::print("{:.1f} GB/s\n", c.gbps);            // (read + write) bytes / s / 1e9
//   cudaGraphExec_t g = bench::empty_kernel_graph(stream, /*device_launch=*/true);
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <vector>

namespace qllm::bench {

// One method at one size: `iters` runs timed alone with CUDA events.
struct CopyRun {
  std::string method;  // "cudaMemcpyAsync" or "copy_kernel_vec16"
  size_t bytes = 0;    // bytes copied; the traffic is twice that
  double median_ms = 0, min_ms = 0, max_ms = 0;
  bool verified = false;  // the destination equals the source afterwards
  double gbps() const { return 2.0 * double(bytes) / (median_ms * 1e-3) / 1e9; }
};

struct CopyCeiling {
  std::vector<CopyRun> runs;
  double gbps = 0;        // the best median GB/s over the methods
  std::string method;     // the method that gave it
  bool verified = true;   // every copy checked out
};

// Copies `bytes` (rounded down to a multiple of 16) device to device with
// cudaMemcpyAsync and with a 16-byte-vector copy kernel: `warmup` untimed
// runs, then `iters` runs each timed alone; the medians. GB/s counts bytes
// read plus bytes written (2·bytes per copy). Allocates 2·bytes of device
// memory for the call and frees it before returning.
CopyCeiling measure_copy_ceiling(size_t bytes, int iters, int warmup, cudaStream_t stream);

// A graph holding one empty kernel <<<1, 32>>>, captured on `stream` and
// instantiated for host launch, or (device_launch) with
// cudaGraphInstantiateFlagDeviceLaunch as the engine's unit graphs are;
// uploaded. The caller destroys it with cudaGraphExecDestroy.
cudaGraphExec_t empty_kernel_graph(cudaStream_t stream, bool device_launch);

}  // namespace qllm::bench
