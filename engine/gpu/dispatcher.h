// Which dispatcher runs the engine's work units (scheduler.dispatcher), and
// the backend that goes with it, built from the configuration:
//
//   cpu   CpuBackend over the fp32 ReferenceModel (engine/core/cpu_engine.h)
//   host  GpuHostBackend (host_backend.h) over DeviceWeights uploaded from
//         the checkpoint, or made on the device when model.synthetic_weights
//   device  GpuDeviceBackend (device_backend.h): the host dispatcher's graphs
//           launched by the scheduler loop on the GPU, after a start-up
//           self-test against the host launch
//
//   const auto choice = gpu::choose_dispatcher(cfg);      // throws with the reason
//   auto d = gpu::make_dispatch(cfg, ck, choice, verbose);
//   Engine e(*d.backend, d.limits, clock);
//
// Lives in engine/gpu so that qllm_core stays free of CUDA code; the server
// and `qllm run` call it.
#pragma once

#include "engine/config/engine_config.h"
#include "engine/core/engine.h"
#include "engine/core/unit_backend.h"
#include "engine/model/checkpoint.h"
#include "kernels/device_info.h"

#include <memory>
#include <string>
#include <string_view>

namespace qllm::gpu {

struct DispatcherChoice {
  std::string name;    // "device", "host" or "cpu"
  std::string reason;  // "configured", "auto: no CUDA device: ...", "auto: NVIDIA H100 ..."
};

// scheduler.dispatcher against the devices present:
//   auto    device when a CUDA device that supports device graph launch is
//           present, else cpu (make_dispatch falls back from device to host
//           to cpu when one cannot start, and says why)
//   device  device; qllm::Error naming why when there is no such device
//   host    host; likewise
//   cpu     cpu
DispatcherChoice choose_dispatcher(std::string_view want, const cuda::DeviceReport& devices);
DispatcherChoice choose_dispatcher(const EngineConfig& cfg);  // with cuda::query_devices()

// A backend ready for an Engine, owning what it runs on (the reference
// model, or the device weights and graphs).
struct Dispatch {
  DispatcherChoice choice;
  std::unique_ptr<Backend> backend;
  EngineLimits limits;  // the engine's limits for this backend (limits_from_config; on the
                        // host dispatcher kv_cache.num_blocks 0 is sized from GPU memory)
  std::string detail;   // one line about the backend (host: the capture summary)
};

// Builds the chosen backend for `ck` (opened from the configured model).
// When `auto` chose device and the device backend cannot start (it throws:
// device graph launch refused, the self-test failed), the host backend is
// tried, then the cpu one, and Dispatch::choice says why. Otherwise
// throws qllm::Error when it cannot build the backend: the model does not fit in GPU memory
// (with the sizes), a shape the GPU kernels do not support, model.dtype other
// than bf16 on the host dispatcher.
Dispatch make_dispatch(const EngineConfig& cfg, const Checkpoint& ck, const DispatcherChoice& choice,
                       bool verbose = false);

// The host dispatcher's KV blocks for kv_cache.num_blocks 0: what fits in
// min(free_bytes, kv_cache.gpu_memory_fraction * total_bytes) after
// everything else the GPU model allocates (memory_plan.h: weights, slot
// buffers, workspaces), at most room for server.max_concurrent_requests
// sequences of `max_seq_len` positions (more can never be in use at once).
// 0 when not even one block fits. The captured graphs come out of the
// (1 - fraction) left over.
int64_t host_kv_blocks(const EngineConfig& cfg, const ModelDesc& d, const EngineLimits& l, int max_seq_len,
                       uint64_t free_bytes, uint64_t total_bytes);

}  // namespace qllm::gpu
