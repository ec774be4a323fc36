#include "engine/gpu/device_backend.h"

#include "device_scheduler/device_loop.h"
#include "engine/common/error.h"
#include "graphs/capture.h"
#include "kernels/cuda_check.h"
#include "profiling/nvtx.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace qllm::gpu {
namespace {

// Wall time for the clock a self-test's collect() maps device times onto.
class SelfTestClock final : public Clock {
 public:
  double now() const override { return clock_.now(); }
  void unit_ran(double) override {}
  void idle_until(double) override {}

 private:
  WallClock clock_;
};

// One pass of the self-test: its chunks and what the host launch produced.
struct SelfTestPass {
  int slot = 0;
  std::vector<int32_t> tokens;
  std::vector<int32_t> table;
  int pos = 0;
  std::vector<int32_t> host_tokens;
  std::vector<float> host_logits;

  std::vector<cpu::SeqChunk> chunks() const { return {{tokens, pos, table, true}}; }
};

// Runs a whole pass through the host dispatcher (every unit launched from the host).
void run_on_host(GpuHostBackend& h, SelfTestPass& p, std::span<const SampleSpec> sampling) {
  const auto chunks = p.chunks();
  h.begin(p.slot, chunks, sampling);
  sched::SlotState st;
  sched::publish(st, PriorityClass::LS, 0);
  while (st.active) {
    const int n = h.run(p.slot, st.cursor);
    sched::advance(st, h.desc().layers, n);
  }
  p.host_tokens = h.sampled(p.slot);
  p.host_logits = h.logits(p.slot);
}

}  // namespace

DeviceBackendOptions DeviceBackendOptions::from(const EngineLimits& l) {
  DeviceBackendOptions o;
  o.loop.policy.policy = l.policy;
  o.loop.policy.be_max_wait_ns = uint64_t(std::max(0.0, l.be_max_wait_s) * 1e9);
  return o;
}

GpuDeviceBackend::GpuDeviceBackend(const DeviceWeights& w, const HostBackendConfig& cfg,
                                   const DeviceBackendOptions& opt) {
  prof::Range range("device/setup");
  {
    std::string why;
    int dev = 0;
    QLLM_CUDA_CHECK(cudaGetDevice(&dev));
    if (!sched::DeviceLoop::supported(dev, &why)) fail("device dispatcher: {}", why);
  }
  if (w.desc().layers > sched::kMaxLayers)
    fail("device dispatcher: {} layers, the device loop holds at most {}", w.desc().layers, sched::kMaxLayers);
  if (cfg.slots > sched::kMaxSlots)
    fail("device dispatcher: {} slots, the control block holds at most {}", cfg.slots, sched::kMaxSlots);
  host_ = std::make_unique<GpuHostBackend>(w, cfg);
  try {
    // The reference passes are launched from the host before the loop starts:
    // the host must not launch device-launch graphs while the loop runs.
    std::vector<SelfTestPass> passes;
    const SampleSpec greedy{};
    if (opt.self_test) {
      const ModelDesc& d = host_->desc();
      const int block = cfg.block_size;
      const int prompt = std::min(6, std::max(1, block * 2 - 1));
      QLLM_CHECK_MSG(cfg.kv_blocks >= 2, "device dispatcher self-test: needs 2 KV blocks, the cache has {}",
                     cfg.kv_blocks);
      SelfTestPass pre;
      pre.slot = 0;
      for (int i = 0; i < prompt; ++i) pre.tokens.push_back(int32_t((i * 7919 + 13) % d.vocab));
      pre.table = {0, 1};
      run_on_host(*host_, pre, std::span(&greedy, 1));
      SelfTestPass dec;
      dec.slot = cfg.slots > 1 ? 1 : 0;
      dec.tokens = {pre.host_tokens.at(0)};
      dec.pos = prompt;
      dec.table = {0, 1};
      run_on_host(*host_, dec, std::span(&greedy, 1));
      // The decode pass once more on slot 0 (its KV again, the same values):
      // slot 0's second pass names its other metadata buffer, so both of its
      // begin graphs run from the device.
      SelfTestPass again = dec;
      again.slot = 0;
      passes = {pre, dec, again};
    }
    start_loop(opt);
    if (opt.self_test) {
      prof::Range st("device/self-test");
      SelfTestClock clock;
      double worst = 0;
      int rows = 0;
      for (size_t i = 0; i < passes.size(); ++i) {
        const SelfTestPass& p = passes[i];
        const auto chunks = p.chunks();
        pass_->publish(p.slot, 1000 + i, PriorityClass::LS, chunks, std::span(&greedy, 1));
        std::vector<PassResult> done;
        std::vector<UnitRecord> units;
        const auto t0 = std::chrono::steady_clock::now();
        while (done.empty()) {
          pass_->collect(done, units, 0.01, clock);
          if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(20))
            fail("device dispatcher self-test: pass {} did not finish within 20 s on the device loop", i);
        }
        const PassResult& r = done.front();
        if (r.status != PassStatus::Done)
          fail("device dispatcher self-test: pass {} ended without tokens ({})", i,
               r.error.empty() ? "cancelled or abandoned" : r.error);
        const std::vector<float> lg = host_->logits(p.slot);
        QLLM_CHECK_MSG(lg.size() == p.host_logits.size(), "self-test: {} logits from the device, {} from the host",
                       lg.size(), p.host_logits.size());
        float scale = 1, diff = 0;
        for (size_t k = 0; k < lg.size(); ++k) {
          scale = std::max(scale, std::fabs(p.host_logits[k]));
          diff = std::max(diff, std::fabs(lg[k] - p.host_logits[k]));
          if (!std::isfinite(lg[k])) fail("device dispatcher self-test: pass {} logit {} is {}", i, k, lg[k]);
        }
        worst = std::max(worst, double(diff / scale));
        if (diff / scale > opt.self_test_tolerance)
          fail("device dispatcher self-test: pass {} logits differ from the host launch's by {:.3g} (relative; "
               "tolerance {:.3g})", i, diff / scale, opt.self_test_tolerance);
        if (r.tokens != p.host_tokens)
          fail("device dispatcher self-test: pass {} sampled token {} on the device loop, {} from the host", i,
               r.tokens.empty() ? -1 : r.tokens[0], p.host_tokens.empty() ? -1 : p.host_tokens[0]);
        rows += int(p.tokens.size());
      }
      self_test_ = fmt::format("self-test: a prefill pass and two decode passes ({} rows, both metadata buffers) "
                               "launched from the device loop match the host launch (max relative logit difference "
                               "{:.2g}, tolerance {:.2g})",
                               rows, worst, opt.self_test_tolerance);
    } else {
      self_test_ = "self-test: skipped";
    }
  } catch (...) {
    stop_and_free();
    throw;
  }
}

void GpuDeviceBackend::start_loop(const DeviceBackendOptions& opt) {
  const ModelDesc& d = host_->desc();
  const HostBackendConfig& cfg = host_->config();
  const sched::ControlBlockConfig cbc{uint32_t(cfg.slots), opt.out_capacity, opt.out_timing_reserve};
  const size_t bytes = sched::control_block_bytes(cbc.out_capacity);
  QLLM_CUDA_CHECK(cudaHostAlloc(&cb_mem_, bytes, cudaHostAllocMapped));
  cb_ = sched::control_block_init(cb_mem_, bytes, cbc);
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&loop_stream_, cudaStreamNonBlocking));

  sched::GpuLoopTables t;
  t.main = const_cast<graphs::GraphTable&>(host_->graph_table()).upload(loop_stream_);
  t.decode = const_cast<graphs::GraphTable&>(host_->decode_attn_table()).upload(loop_stream_);
  // Per slot, two staging buffers of its metadata block and a begin graph
  // for each: copy staging buffer m into the block the kernels read, then the
  // embedding. The host stages a pass into the buffer its BatchDesc names
  // while the slot's previous pass still reads the block.
  staging_bytes_ = 0;
  for (int s = 0; s < cfg.slots; ++s)
    staging_bytes_ = std::max(staging_bytes_, (host_->model().slot(s).metadata_bytes() + 255) / 256 * 256);
  QLLM_CUDA_CHECK(cudaMalloc(&d_staging_, staging_bytes_ * size_t(cfg.slots) * sched::kMetaBuffers));
  begins_.assign(size_t(cfg.slots) * sched::kMetaBuffers, nullptr);
  for (int s = 0; s < cfg.slots; ++s) {
    const SlotBuffers& sb = host_->model().slot(s);
    for (int m = 0; m < sched::kMetaBuffers; ++m) {
      void* src = staging(s, m);
      begins_[size_t(s) * sched::kMetaBuffers + size_t(m)] = graphs::capture_for_device_launch(
          fmt::format("slot {} begin from metadata buffer {}", s, m),
          [&](cudaStream_t cs) {
            QLLM_CUDA_CHECK(cudaMemcpyAsync(sb.metadata(), src, sb.metadata_bytes(), cudaMemcpyDeviceToDevice, cs));
            host_->model().enqueue_begin(s, cs);
          },
          host_->stream(s));
    }
  }
  QLLM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&d_begin_), begins_.size() * sizeof(cudaGraphExec_t)));
  QLLM_CUDA_CHECK(cudaMemcpyAsync(d_begin_, begins_.data(), begins_.size() * sizeof(cudaGraphExec_t),
                                  cudaMemcpyHostToDevice, loop_stream_));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(loop_stream_));
  for (int s = 0; s < cfg.slots; ++s) QLLM_CUDA_CHECK(cudaStreamSynchronize(host_->stream(s)));  // uploads
  t.begin = d_begin_;
  for (int s = 0; s < cfg.slots; ++s) {
    const SlotPointers& p = host_->model().slot(s).ptr();
    t.slot[s].counts = p.counts;
    t.slot[s].error = p.error;
    t.slot[s].tokens_out = p.tokens_out;
  }
  for (int l = 0; l < d.layers; ++l) {
    t.units[l] = host_->model().units(l);
    t.fanout[l] = d.is_moe_layer(l) ? d.top_k : 1;
  }
  sched::LoopConfig lc = opt.loop;
  lc.layers = d.layers;
  loop_ = std::make_unique<sched::DeviceLoop>(cb_, lc, t, loop_stream_);
  pass_ = std::make_unique<LoopBackend>(d, cb_, static_cast<LoopBackend::Device&>(*this));
  loop_->start();
}

void GpuDeviceBackend::stop_and_free() {
  if (loop_ && loop_->started()) {
    bool stopped = false;
    if (pass_) {
      std::vector<PassResult> rest;
      SelfTestClock clock;
      stopped = pass_->shutdown(5.0, rest, clock);
    }
    stopped = loop_->wait(stopped ? 5.0 : 0.5);
    if (!stopped) {
      // Freeing what a running kernel uses would wait for it (or fault): keep
      // it, and say so.
      leaked_ = true;
      fmt::print(stderr, "qllm: the device scheduler loop did not stop; its memory is left allocated\n");
      (void)loop_.release();  // left allocated with the graphs and buffers it reads
      (void)host_.release();
      return;
    }
  }
  loop_.reset();
  pass_.reset();
  if (d_begin_) cudaFree(d_begin_);
  d_begin_ = nullptr;
  for (cudaGraphExec_t g : begins_)
    if (g) cudaGraphExecDestroy(g);
  begins_.clear();
  if (d_staging_) cudaFree(d_staging_);
  d_staging_ = nullptr;
  if (loop_stream_) cudaStreamDestroy(loop_stream_);
  loop_stream_ = nullptr;
  if (cb_mem_) cudaFreeHost(cb_mem_);
  cb_mem_ = nullptr;
  cb_ = nullptr;
}

GpuDeviceBackend::~GpuDeviceBackend() { stop_and_free(); }

bool GpuDeviceBackend::shutdown(double timeout_s) {
  std::vector<PassResult> rest;
  SelfTestClock clock;
  const bool ok = pass_->shutdown(timeout_s, rest, clock);
  return ok && loop_->wait(timeout_s);
}

void GpuDeviceBackend::publish(int slot, uint64_t pass_id, PriorityClass cls,
                               std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) {
  pass_->publish(slot, pass_id, cls, chunks, sampling);
}

void GpuDeviceBackend::cancel(uint64_t pass_id) { pass_->cancel(pass_id); }

void GpuDeviceBackend::collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, double timeout_s,
                               const Clock& clock) {
  pass_->collect(done, units, timeout_s, clock);
}

void* GpuDeviceBackend::staging(int slot, int meta) const {
  return static_cast<char*>(d_staging_) + (size_t(slot) * sched::kMetaBuffers + size_t(meta)) * staging_bytes_;
}

void GpuDeviceBackend::stage(int slot, int meta, std::span<const cpu::SeqChunk> chunks,
                             std::span<const SampleSpec> sampling) {
  prof::Range range("device/stage");
  QLLM_CHECK_MSG(meta >= 0 && meta < sched::kMetaBuffers, "device dispatcher: metadata buffer {}", meta);
  host_->stage(slot, chunks, sampling, staging(slot, meta));
  if (stage_hook_) stage_hook_(slot, staging(slot, meta), *host_);
}

// The control block says whether the loop exited: it does so only after
// acknowledging a shutdown or raising an error. The stream is asked too, for
// a fault (it throws then), but its "done" is not relied on alone: whether a
// stream stays busy through a graph's tail launches is not something this
// code depends on.
bool GpuDeviceBackend::running() {
  if (!loop_ || !loop_->started()) return false;
  (void)loop_->running();  // throws qllm::Error on a fault in the loop or a unit
  if (sched::host_check_error(*cb_)) return false;
  return sync::load_acquire_sys(&cb_->life.dev.shutdown_ack) == 0;
}

std::string GpuDeviceBackend::bad_data_message() const { return error_word_meaning(1); }

}  // namespace qllm::gpu
