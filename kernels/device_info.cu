#include "kernels/cuda_check.h"
#include "kernels/device_info.h"

#include <cstdio>
#include <cstdlib>

namespace qllm::cuda {

void cuda_failed(cudaError_t err, const char* expr, const char* file, int line) {
  std::fprintf(stderr, "qllm: CUDA error %s (%s) in %s at %s:%d\n", cudaGetErrorName(err),
               cudaGetErrorString(err), expr, file, line);
  std::fflush(stderr);
  std::abort();
}

DeviceReport query_devices() {
  DeviceReport r;
  cudaRuntimeGetVersion(&r.runtime_version);
  cudaDriverGetVersion(&r.driver_version);
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    r.why_none = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    return r;
  }
  if (n == 0) {
    r.why_none = "no CUDA device found";
    return r;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.total_mem = p.totalGlobalMem;
    d.sm_count = p.multiProcessorCount;
    d.device_graph_launch = p.major >= 8 && r.runtime_version >= 12000;
    r.devices.push_back(d);
  }
  if (r.devices.empty()) r.why_none = "CUDA devices present but none could be queried";
  return r;
}

bool gpu_available() { return !query_devices().devices.empty(); }

}  // namespace qllm::cuda
