// The host half of device_loop.h (the kernel and its executor: device_loop.cu).
#include "device_scheduler/device_loop.h"

#include "engine/common/error.h"
#include "kernels/device_info.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

namespace qllm::sched {
namespace detail {
cudaGraphExec_t capture_device_loop(LoopState* state, const GpuLoopTables* tables, cudaStream_t stream,
                                    cudaError_t* launch_error);
}  // namespace detail

namespace {

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) fail("device loop: {} failed: {} ({})", call, cudaGetErrorName(e), cudaGetErrorString(e));
}

void check_table(const graphs::DeviceGraphTable& t, const char* name, const LoopConfig& cfg, uint32_t slots) {
  if (t.shape.layers != cfg.layers)
    fail("device loop: the {} graph table has {} layers, the loop {}", name, t.shape.layers, cfg.layers);
  if (t.shape.slots < int32_t(slots))
    fail("device loop: the {} graph table has {} slots, the control block {}", name, t.shape.slots, slots);
  if (t.shape.buckets < 1 || t.shape.buckets > 30)
    fail("device loop: the {} graph table has {} buckets (1..30)", name, t.shape.buckets);
}

// Everything the host can check before the loop starts (no CUDA call).
void validate(const ControlBlock* cb, const LoopConfig& cfg, const GpuLoopTables& t) {
  if (cb == nullptr) fail("device loop: no control block");
  const Header& h = cb->header;
  if (h.magic != kControlBlockMagic || h.version != kControlBlockVersion || h.layout_bytes != sizeof(ControlBlock) ||
      h.record_bytes != sizeof(OutputRecord))
    fail("device loop: the control block is not initialised for this build (control_block_init)");
  if (h.n_slots < 1 || h.n_slots > uint32_t(kMaxSlots))
    fail("device loop: the control block has {} slots (1..{})", h.n_slots, kMaxSlots);
  if (cfg.layers < 1 || cfg.layers > kMaxLayers)
    fail("device loop: {} layers; the device loop supports 1..{}", cfg.layers, kMaxLayers);
  if (t.main.execs == nullptr) fail("device loop: no main graph table (attn, expert, head)");
  check_table(t.main, "main", cfg, h.n_slots);
  if (t.decode.execs != nullptr) check_table(t.decode, "decode attn", cfg, h.n_slots);
  if (t.begin == nullptr) fail("device loop: no begin graphs");
  for (uint32_t s = 0; s < h.n_slots; ++s) {
    const GpuLoopSlot& p = t.slot[s];
    if (!p.counts || !p.error || !p.tokens_out)
      fail("device loop: slot {} lacks its expert counts, error word or sampled tokens buffer", s);
  }
  for (int l = 0; l < cfg.layers; ++l) {
    if (t.units[l] < 1 || t.units[l] > kMaxLoopExperts || t.units[l] > t.main.shape.experts)
      fail("device loop: layer {} has {} expert units; needs 1..{} (the main table holds {} experts)", l,
           t.units[l], kMaxLoopExperts, t.main.shape.experts);
    if (t.fanout[l] < 1 || t.fanout[l] > t.units[l])
      fail("device loop: layer {} sends each row to {} experts; needs 1..{}", l, t.fanout[l], t.units[l]);
  }
}

const char* kind_name(uint32_t k) {
  switch (k) {
    case kLaunchAttn: return "attn";
    case kLaunchExpert: return "expert";
    case kLaunchHead: return "head";
    case kLaunchBegin: return "begin";
    case kLaunchDecodeAttn: return "decode attn";
  }
  return "unknown unit";
}

}  // namespace

std::string describe_graph_launch_error(uint64_t arg) {
  if (arg & kLaunchNoGraph) {
    const uint32_t slot = uint32_t(arg >> 56) & 0xfu, kind = uint32_t(arg >> 48) & 0xfu;
    const uint32_t layer = uint32_t(arg >> 32) & 0xffffu, expert = uint32_t(arg >> 16) & 0xffffu;
    const uint32_t bucket = uint32_t(arg) & 0xffffu;
    if (kind == kLaunchBegin) return fmt::format("slot {}: no begin graph for metadata buffer {}", slot, bucket);
    std::string what = kind_name(kind);
    if (kind == kLaunchExpert) what = fmt::format("expert {} of layer {}", expert, layer);
    else if (kind == kLaunchAttn || kind == kLaunchDecodeAttn) what += fmt::format(" of layer {}", layer);
    if (bucket == 0xffffu) return fmt::format("slot {}: no graph for {}: the rows exceed the largest bucket", slot, what);
    return fmt::format("slot {}: no graph for {} at bucket {} ({} rows)", slot, what, bucket,
                       bucket < 31 ? (1u << bucket) : 0u);
  }
  const auto e = cudaError_t(uint32_t(arg));
  if (arg & kLaunchRelaunch)
    return fmt::format("the scheduler's tail launch of itself failed: {} ({})", cudaGetErrorName(e),
                       cudaGetErrorString(e));
  return fmt::format("device-side fire-and-forget launch of a unit graph failed: {} ({})", cudaGetErrorName(e),
                     cudaGetErrorString(e));
}

bool DeviceLoop::supported(int device, std::string* why) {
  const cuda::DeviceReport r = cuda::query_devices();
  std::string reason;
  if (r.devices.empty()) {
    reason = "no CUDA device: " + (r.why_none.empty() ? std::string("none found") : r.why_none);
  } else {
    const cuda::DeviceInfo* d = nullptr;
    for (const auto& x : r.devices)
      if (x.index == device) d = &x;
    if (d == nullptr) {
      reason = fmt::format("no CUDA device {} ({} found)", device, r.devices.size());
    } else if (d->device_graph_launch) {
      return true;
    } else {
      reason = fmt::format("CUDA device {} ({}, compute capability {}.{}, runtime {}) cannot launch graphs from the "
                           "device (needs compute capability 8.0 or newer and a CUDA 12 runtime)",
                           d->index, d->name, d->cc_major, d->cc_minor, r.runtime_version);
    }
  }
  if (why) *why = reason;
  return false;
}

DeviceLoop::DeviceLoop(ControlBlock* cb, const LoopConfig& cfg, const GpuLoopTables& tables, cudaStream_t stream)
    : cb_(cb), stream_(stream) {
  validate(cb, cfg, tables);
  if (stream == nullptr) fail("device loop: needs a stream of its own (cudaStreamNonBlocking), not the default stream");
  try {
    unsigned flags = 0;
    check(cudaStreamGetFlags(stream, &flags), "cudaStreamGetFlags");
    if (!(flags & cudaStreamNonBlocking))
      fail("device loop: the stream must be created with cudaStreamNonBlocking (the loop never ends on its own; a "
           "blocking stream would make every legacy default-stream call wait for it)");
    void* dev = nullptr;
    check(cudaHostGetDevicePointer(&dev, cb, 0), "cudaHostGetDevicePointer (the control block must be in "
                                                 "cudaHostAllocMapped memory)");
    const auto state = std::make_unique<LoopState>(
        loop_state_init(make_device_end(static_cast<ControlBlock*>(dev), *cb), cfg));
    check(cudaMalloc(&d_state_, sizeof(LoopState)), "cudaMalloc");
    check(cudaMalloc(&d_tables_, sizeof(GpuLoopTables)), "cudaMalloc");
    check(cudaMemcpyAsync(d_state_, state.get(), sizeof(LoopState), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(d_tables_, &tables, sizeof(GpuLoopTables), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    cudaError_t launch_error = cudaSuccess;
    exec_ = detail::capture_device_loop(d_state_, d_tables_, stream, &launch_error);
    check(launch_error, "the scheduler kernel's launch (in the capture)");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // the upload is done
  } catch (...) {
    release();
    throw;
  }
}

DeviceLoop::~DeviceLoop() {
  if (started_) {
    bool stopped = true;
    try {
      stopped = wait(5.0);
    } catch (const std::exception&) {
      // the stream reported an error: nothing of the loop runs any more
    }
    if (!stopped) {
      std::fprintf(stderr,
                   "qllm: the device loop still runs at destruction (no shutdown was requested?); its device memory "
                   "and graph are left allocated\n");
      return;
    }
  }
  release();
}

void DeviceLoop::release() {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (d_state_) cudaFree(d_state_);
  if (d_tables_) cudaFree(d_tables_);
  exec_ = nullptr;
  d_state_ = nullptr;
  d_tables_ = nullptr;
}

void DeviceLoop::start() {
  if (started_) fail("device loop: started twice");
  check(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch (the scheduler graph)");
  started_ = true;
}

bool DeviceLoop::running() const {
  if (!started_) return false;
  const cudaError_t e = cudaStreamQuery(stream_);
  if (e == cudaErrorNotReady) return true;
  if (e == cudaSuccess) return false;
  fail("device loop: its stream reports {} ({}): the loop or a unit it launched faulted", cudaGetErrorName(e),
       cudaGetErrorString(e));
}

bool DeviceLoop::wait(double timeout_s) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    if (!running()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

LoopState DeviceLoop::state() const {
  if (running()) fail("device loop: its state can be read only once it stopped");
  auto s = std::make_unique<LoopState>();
  check(cudaMemcpyAsync(s.get(), d_state_, sizeof(LoopState), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return *s;
}

}  // namespace qllm::sched
