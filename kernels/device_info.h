// What CUDA devices this process can use. Safe to call on a machine with no GPU
// or no driver: it reports zero devices and the reason instead of failing.
#pragma once

#include <string>
#include <vector>

namespace qllm::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  size_t total_mem = 0;            // bytes
  int sm_count = 0;
  bool device_graph_launch = false;  // cc >= 8.0 and runtime >= 12.0 (to be qualified at start)
};

struct DeviceReport {
  std::vector<DeviceInfo> devices;
  std::string why_none;  // set when devices is empty: the CUDA runtime's reason
  int runtime_version = 0;
  int driver_version = 0;
};

DeviceReport query_devices();

// True when at least one usable CUDA device is present.
bool gpu_available();

}  // namespace qllm::cuda
