// qllm devices: what CUDA devices this process can use.
#include "engine/cli/commands.h"
#include "kernels/device_info.h"

#include <fmt/format.h>

namespace qllm::cli {

Run add_devices(CLI::App&) {
  return []() -> int {
    const auto r = cuda::query_devices();
    fmt::print("CUDA runtime {}.{}, driver {}.{}\n", r.runtime_version / 1000,
               (r.runtime_version % 1000) / 10, r.driver_version / 1000,
               (r.driver_version % 1000) / 10);
    if (r.devices.empty()) {
      fmt::print("no usable CUDA device: {}\nqllm will use the cpu dispatcher.\n", r.why_none);
      return 0;
    }
    for (const auto& d : r.devices)
      fmt::print("[{}] {}  sm_{}{}  {} SMs  {:.1f} GiB\n", d.index, d.name, d.cc_major, d.cc_minor,
                 d.sm_count, double(d.total_mem) / double(1ull << 30));
    return 0;
  };
}

}  // namespace qllm::cli
