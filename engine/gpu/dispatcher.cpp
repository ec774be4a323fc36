#include "engine/gpu/dispatcher.h"

#include "engine/common/error.h"
#include "engine/core/cpu_engine.h"
#include "engine/core/engine_setup.h"
#include "engine/gpu/device_backend.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/host_backend.h"
#include "engine/gpu/memory_plan.h"
#include "kernels/cuda_check.h"
#include "profiling/nvtx.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <optional>

namespace qllm::gpu {
namespace {

// A backend that owns what it runs on; every call goes to `inner`.
template <typename Owned, typename Inner>
class Owning final : public UnitBackend {
 public:
  template <typename... Args>
  explicit Owning(Owned owned, Args&&... args)
      : owned_(std::move(owned)), inner_(owned_, std::forward<Args>(args)...) {}
  Owning(const Owning&) = delete;  // inner_ refers to owned_
  Owning& operator=(const Owning&) = delete;
  const ModelDesc& desc() const override { return inner_.desc(); }
  void begin(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) override {
    inner_.begin(slot, chunks, sampling);
  }
  int run(int slot, const sched::Cursor& unit) override { return inner_.run(slot, unit); }
  std::vector<int32_t> sampled(int slot) override { return inner_.sampled(slot); }
  const Inner& inner() const { return inner_; }

 private:
  Owned owned_;  // before inner_: built first, destroyed last
  Inner inner_;
};

// The device dispatcher's backend with the weights it runs on.
struct WeightsHolder {
  DeviceWeights weights;
};
class OwningDeviceBackend final : private WeightsHolder, public GpuDeviceBackend {
 public:
  OwningDeviceBackend(DeviceWeights w, const HostBackendConfig& cfg, const DeviceBackendOptions& opt)
      : WeightsHolder{std::move(w)}, GpuDeviceBackend(weights, cfg, opt) {}
};

// The GPU model's memory for `kv_blocks` blocks (memory_plan.h).
DeviceMemoryPlan plan_for(const ModelDesc& d, const EngineLimits& l, int max_seq_len, int64_t kv_blocks) {
  MemoryParams p;
  p.slots = l.ls_slots + l.be_slots;
  p.slot.max_tokens = l.max_tokens_per_step;
  p.slot.max_seqs = l.max_seqs_per_step;
  p.slot.max_seq_len = max_seq_len;
  p.slot.block_size = l.block_size;
  p.kv_blocks = kv_blocks;
  return plan_device_memory(d, p);
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

}  // namespace

DispatcherChoice choose_dispatcher(std::string_view want, const cuda::DeviceReport& devices) {
  const cuda::DeviceInfo* dev = nullptr;
  for (const auto& d : devices.devices)
    if (d.device_graph_launch) {
      dev = &d;
      break;
    }
  std::string none;  // why there is no device for the host dispatcher
  if (devices.devices.empty()) {
    none = "no CUDA device: " + (devices.why_none.empty() ? std::string("none found") : devices.why_none);
  } else if (!dev) {
    const auto& d = devices.devices.front();
    none = fmt::format("CUDA device {} ({}, compute capability {}.{}) cannot run graphs instantiated for device "
                       "launch (needs 8.0 or newer)", d.index, d.name, d.cc_major, d.cc_minor);
  }
  if (want == "cpu") return {"cpu", "configured"};
  if (want == "device" || want == "host") {
    if (!dev) fail("scheduler.dispatcher '{}' is not available: {}; use 'auto' or 'cpu'", want, none);
    return {std::string(want), "configured"};
  }
  if (want == "auto") {
    if (!dev) return {"cpu", "auto: " + none};
    return {"device", fmt::format("auto: CUDA device {} ({}) supports device graph launch", dev->index, dev->name)};
  }
  fail("scheduler.dispatcher '{}' is not one of auto, device, host, cpu", want);
}

DispatcherChoice choose_dispatcher(const EngineConfig& cfg) {
  return choose_dispatcher(cfg.scheduler_dispatcher, cuda::query_devices());
}

int64_t host_kv_blocks(const EngineConfig& cfg, const ModelDesc& d, const EngineLimits& l, int max_seq_len,
                       uint64_t free_bytes, uint64_t total_bytes) {
  const uint64_t budget = std::min(free_bytes, uint64_t(cfg.kv_gpu_memory_fraction * double(total_bytes)));
  const uint64_t rest = plan_for(d, l, max_seq_len, 0).total_bytes;
  const uint64_t per_block = plan_kv_layout(d, 1, l.block_size).total_bytes();
  if (budget <= rest || per_block == 0) return 0;
  const int64_t fit = int64_t((budget - rest) / per_block);
  const int64_t per_seq = (int64_t(max_seq_len) + l.block_size - 1) / l.block_size;
  return std::min(fit, std::max<int64_t>(1, cfg.server_max_concurrent_requests) * per_seq);
}

namespace {

Dispatch make_dispatch_as_chosen(const EngineConfig& cfg, const Checkpoint& ck, const DispatcherChoice& choice,
                                 bool verbose) {
  const ModelDesc& d = ck.desc();
  Dispatch out;
  out.choice = choice;
  out.limits = limits_from_config(cfg, d);
  if (choice.name == "cpu") {
    const EngineLimits& l = out.limits;
    out.backend = std::make_unique<Owning<cpu::ReferenceModel, CpuBackend>>(
        cpu::ReferenceModel(ck), l.ls_slots + l.be_slots, l.kv_blocks, l.block_size);
    out.detail = "fp32 reference model on the CPU";
    return out;
  }
  QLLM_CHECK_MSG(choice.name == "host" || choice.name == "device", "no backend for dispatcher '{}'", choice.name);
  prof::Range range("host/setup");
  if (cfg.model_dtype != "bf16")
    fail("model.dtype '{}': the {} dispatcher computes in bf16 only (the cpu dispatcher in fp32)", cfg.model_dtype,
         choice.name);
  const int max_seq_len = int(std::min<int64_t>(cfg.model_max_seq_len, d.max_positions));
  size_t free_bytes = 0, total_bytes = 0;
  QLLM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const std::string name = ck.dir().filename().string();
  EngineLimits& l = out.limits;
  if (cfg.kv_num_blocks == 0) {
    const int64_t blocks = host_kv_blocks(cfg, d, l, max_seq_len, free_bytes, total_bytes);
    if (blocks < 1)
      fail("{}: no room for the KV cache in kv_cache.gpu_memory_fraction {} of the GPU's {} ({} free): {}", name,
           cfg.kv_gpu_memory_fraction, format_gb(total_bytes), format_gb(free_bytes),
           plan_for(d, l, max_seq_len, 1).fit_error(name, d, 0));
    l.kv_blocks = int(std::min<int64_t>(blocks, INT_MAX));
  }
  const DeviceMemoryPlan plan = plan_for(d, l, max_seq_len, l.kv_blocks);
  if (const std::string why = plan.fit_error(name, d, free_bytes); !why.empty()) fail("{}", why);

  std::optional<DeviceWeights> w;
  {
    Stream st;
    w.emplace(cfg.model_synthetic_weights ? DeviceWeights::synthetic(d, 0, st.s)
                                          : DeviceWeights::upload(ck, st.s, {.progress = verbose}));
  }
  const std::string weights = fmt::format("{} bf16 weights{}", format_gb(plan.weight_bytes),
                                         cfg.model_synthetic_weights ? " (synthetic, seed 0)" : "");
  if (choice.name == "device") {
    auto dev = std::make_unique<OwningDeviceBackend>(std::move(*w), HostBackendConfig::from(l, max_seq_len),
                                                     DeviceBackendOptions::from(l));
    out.detail = fmt::format("{}; {}; {}", weights, dev->capture_summary().str(), dev->self_test_summary());
    out.backend = std::move(dev);
    return out;
  }
  using Host = Owning<DeviceWeights, GpuHostBackend>;
  auto host = std::make_unique<Host>(std::move(*w), HostBackendConfig::from(l, max_seq_len));
  out.detail = fmt::format("{}; {}", weights, host->inner().capture_summary().str());
  out.backend = std::move(host);
  return out;
}

}  // namespace

Dispatch make_dispatch(const EngineConfig& cfg, const Checkpoint& ck, const DispatcherChoice& choice, bool verbose) {
  if (choice.name == "cpu" || choice.reason.rfind("auto", 0) != 0)
    return make_dispatch_as_chosen(cfg, ck, choice, verbose);
  // auto picked device (or host): if it cannot start (device graph launch
  // refused, the self-test failed, a capture or GEMM plan the GPU refuses,
  // the model does not fit), say why and try the next: host, then cpu.
  std::string why = choice.reason;
  if (choice.name == "device") {
    try {
      return make_dispatch_as_chosen(cfg, ck, choice, verbose);
    } catch (const std::exception& e) {
      why = std::string("auto: the device dispatcher could not start: ") + e.what();
    }
    try {
      return make_dispatch_as_chosen(cfg, ck, {"host", why}, verbose);
    } catch (const std::exception& e) {
      why += std::string("; the host dispatcher could not start either: ") + e.what();
    }
  } else {
    try {
      return make_dispatch_as_chosen(cfg, ck, choice, verbose);
    } catch (const std::exception& e) {
      why = std::string("auto: the host dispatcher could not start: ") + e.what();
    }
  }
  return make_dispatch_as_chosen(cfg, ck, {"cpu", why}, verbose);
}

}  // namespace qllm::gpu
