#include "engine/gpu/host_backend.h"

#include "engine/common/error.h"
#include "engine/gpu/memory_plan.h"
#include "kernels/cuda_check.h"
#include "profiling/nvtx.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace qllm::gpu {
namespace {

// Buckets 1, 2, 4, ... up to bucket_for(rows): how many.
int bucket_count(int rows) { return cuda::bucket_index(rows) + 1; }

std::string format_mb(int64_t bytes) { return fmt::format("{:.1f} MB", double(bytes) / 1e6); }

}  // namespace

HostBackendConfig HostBackendConfig::from(const EngineLimits& l, int max_seq_len) {
  HostBackendConfig c;
  c.slots = l.ls_slots + l.be_slots;
  c.max_tokens = l.max_tokens_per_step;
  c.max_seqs = l.max_seqs_per_step;
  c.kv_blocks = l.kv_blocks;
  c.block_size = l.block_size;
  c.max_seq_len = max_seq_len;
  return c;
}

GpuModelConfig HostBackendConfig::model_config() const {
  GpuModelConfig m;
  m.slots = slots;
  m.slot.max_tokens = max_tokens;
  m.slot.max_seqs = max_seqs;
  m.slot.max_seq_len = max_seq_len;
  m.slot.block_size = block_size;
  m.slot.sm_count = sm_count;
  m.kv_blocks = kv_blocks;
  m.gemm_workspace_bytes = gemm_workspace_bytes;
  return m;
}

GraphCounts count_unit_graphs(const ModelDesc& d, int slots, int max_tokens, int max_seqs) {
  const int64_t nb = bucket_count(max_tokens), nh = bucket_count(max_seqs);
  int64_t mlps = 0;  // expert units over the layers: E per MoE layer, 1 per dense one
  for (int l = 0; l < d.layers; ++l) mlps += d.is_moe_layer(l) ? d.num_experts : 1;
  GraphCounts c;
  c.begin = slots;
  c.attn = int64_t(slots) * d.layers * nb;
  c.attn_decode = int64_t(slots) * d.layers * nh;
  c.expert = int64_t(slots) * mlps * nb;
  c.head = int64_t(slots) * nh;
  return c;
}

std::string CaptureSummary::str() const {
  return fmt::format("{} unit graphs ({} slots: {} begin, {} attn + {} decode attn, {} expert, {} head) captured "
                     "in {:.2f} s, {} of device memory",
                     graphs.total(), graphs.begin, graphs.begin, graphs.attn, graphs.attn_decode, graphs.expert,
                     graphs.head, seconds, format_mb(device_bytes));
}

std::string error_word_meaning(int32_t word) {
  if (word == 0) return "no error";
  return fmt::format("a GPU kernel found bad per-step data (error word {}): a token id outside the vocabulary "
                     "(embedding), a KV slot outside the cache (RoPE and KV write), a sequence, position or "
                     "block outside its table (attention), or an expert id outside the model's experts "
                     "(expert lists); the rows concerned were skipped, so the pass's output is not valid",
                     word);
}

// One slot's host state. Pinned memory: the expert counts [E], the error
// word, the sampled tokens [S] (one block: the readbacks' destinations).
struct GpuHostBackend::Slot {
  cudaStream_t stream = nullptr;
  cudaGraphExec_t begin = nullptr;
  int32_t* pinned = nullptr;
  int32_t* counts = nullptr;
  int32_t* error = nullptr;
  int32_t* tokens = nullptr;
  std::vector<cuda::SamplingRow> sampling;  // per chunk (set_step's input)
  StepInfo step;
  bool decode_only = false;      // every chunk has one token: the decode attention graphs
  bool in_pass = false;          // begin() ran and the head has not
  std::vector<int> experts;      // ids with rows in the current layer, ascending
  std::vector<int> expert_rows;  // their counts
  std::vector<int32_t> sampled;  // the head's tokens

  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() {
    if (stream) cudaStreamSynchronize(stream);
    if (begin) cudaGraphExecDestroy(begin);
    if (pinned) cudaFreeHost(pinned);
    if (stream) cudaStreamDestroy(stream);
  }
};

GpuHostBackend::GpuHostBackend(const DeviceWeights& w, const HostBackendConfig& cfg) : cfg_(cfg) {
  model_ = std::make_unique<GpuModel>(w, cfg_.model_config());
  const ModelDesc& d = model_->desc();
  const int experts = std::max(1, d.num_experts);
  for (int s = 0; s < cfg_.slots; ++s) {
    auto sl = std::make_unique<Slot>();
    QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&sl->stream, cudaStreamNonBlocking));
    const size_t n = size_t(experts) + 1 + size_t(cfg_.max_seqs);
    QLLM_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&sl->pinned), n * sizeof(int32_t)));
    std::fill(sl->pinned, sl->pinned + n, 0);
    sl->counts = sl->pinned;
    sl->error = sl->counts + experts;
    sl->tokens = sl->error + 1;
    slots_.push_back(std::move(sl));
  }
  buckets_ = bucket_count(model_->max_bucket());
  head_buckets_ = bucket_count(model_->max_head_bucket());
  int mlps = 1;
  for (int l = 0; l < d.layers; ++l) mlps = std::max(mlps, model_->units(l));
  table_ = std::make_unique<graphs::GraphTable>(graphs::TableShape{cfg_.slots, d.layers, mlps, buckets_});
  decode_ = std::make_unique<graphs::GraphTable>(graphs::TableShape{cfg_.slots, d.layers, 0, head_buckets_});
  try {
    capture_all();
  } catch (...) {
    for (auto& sl : slots_) cudaStreamSynchronize(sl->stream);  // uploads done before the graphs go
    throw;
  }
}

// The graph tables (members after slots_) are destroyed first: nothing of
// theirs may still run.
GpuHostBackend::~GpuHostBackend() {
  for (auto& s : slots_) cudaStreamSynchronize(s->stream);
}

void GpuHostBackend::capture_all() {
  prof::Range range("host/capture");
  const ModelDesc& d = model_->desc();
  const GpuModel& m = *model_;
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  size_t free0 = 0, free1 = 0, total = 0;
  QLLM_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  const auto t0 = std::chrono::steady_clock::now();
  using graphs::UnitKind;
  for (int s = 0; s < cfg_.slots; ++s) {
    Slot& sl = *slots_[size_t(s)];
    auto capture = [&](const std::string& what, const std::function<void(cudaStream_t)>& body) {
      return graphs::capture_for_device_launch(fmt::format("slot {} {}", s, what), body, sl.stream);
    };
    sl.begin = capture("begin", [&](cudaStream_t cs) { m.enqueue_begin(s, cs); });
    for (int l = 0; l < d.layers; ++l) {
      for (int b = 0; b < buckets_; ++b)
        table_->set(s, UnitKind::Attn, l, 0, b,
                    capture(fmt::format("attn[{}] bucket {}", l, 1 << b),
                            [&](cudaStream_t cs) { m.enqueue_attn(s, l, cs, 1 << b, AttnKernel::Prefill); }));
      for (int b = 0; b < head_buckets_; ++b)
        decode_->set(s, UnitKind::Attn, l, 0, b,
                     capture(fmt::format("decode attn[{}] bucket {}", l, 1 << b),
                             [&](cudaStream_t cs) { m.enqueue_attn(s, l, cs, 1 << b, AttnKernel::Decode); }));
      for (int e = 0; e < m.units(l); ++e)
        for (int b = 0; b < buckets_; ++b)
          table_->set(s, UnitKind::Expert, l, e, b,
                      capture(fmt::format("expert[{}][{}] bucket {}", l, e, 1 << b),
                              [&](cudaStream_t cs) { m.enqueue_expert(s, l, e, 1 << b, cs); }));
    }
    for (int b = 0; b < head_buckets_; ++b)
      table_->set(s, UnitKind::Head, 0, 0, b,
                  capture(fmt::format("head bucket {}", 1 << b),
                          [&](cudaStream_t cs) { m.enqueue_head(s, cs, 1 << b); }));
  }
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());  // every upload done
  summary_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  QLLM_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  summary_.device_bytes = int64_t(free0) - int64_t(free1);
  summary_.graphs = count_unit_graphs(d, cfg_.slots, cfg_.max_tokens, cfg_.max_seqs);
  int64_t begins = 0;
  for (const auto& sl : slots_) begins += sl->begin != nullptr;
  QLLM_CHECK_MSG(table_->captured() + decode_->captured() + begins == summary_.graphs.total(),
                 "captured {} + {} + {} graphs, planned {}", table_->captured(), decode_->captured(), begins,
                 summary_.graphs.total());
}

GpuHostBackend::Slot& GpuHostBackend::at(int slot) {
  QLLM_CHECK_MSG(slot >= 0 && slot < int(slots_.size()), "host backend: slot {} of {}", slot, slots_.size());
  return *slots_[size_t(slot)];
}

cudaStream_t GpuHostBackend::stream(int slot) const { return slots_.at(size_t(slot))->stream; }

cudaGraphExec_t GpuHostBackend::begin_graph(int slot) const { return slots_.at(size_t(slot))->begin; }

void GpuHostBackend::launch(int slot, cudaGraphExec_t exec, const char* what) {
  QLLM_CHECK_MSG(exec != nullptr, "slot {}: no graph captured for {}", slot, what);
  prof::Range range("host/launch");
  QLLM_CUDA_CHECK(cudaGraphLaunch(exec, at(slot).stream));
}

void GpuHostBackend::check_error(int slot, const char* unit) {
  Slot& s = at(slot);
  const int32_t word = *s.error;
  if (word == 0) return;
  *s.error = 0;
  s.in_pass = false;
  model_->slot(slot).clear_error(s.stream);  // the next pass starts clean
  fail("host dispatcher, slot {}, {}: {}", slot, unit, error_word_meaning(word));
}

void GpuHostBackend::set_step(int slot, std::span<const cpu::SeqChunk> chunks,
                              std::span<const SampleSpec> sampling, void* dst) {
  Slot& s = at(slot);
  size_t wanted = 0;
  for (const auto& c : chunks) wanted += c.logits;
  QLLM_CHECK_MSG(sampling.size() == wanted, "slot {}: {} sampling entries for {} chunks with logits", slot,
                 sampling.size(), wanted);
  s.sampling.assign(chunks.size(), cuda::SamplingRow{});
  s.decode_only = !chunks.empty();
  for (size_t c = 0, i = 0; c < chunks.size(); ++c) {
    s.decode_only = s.decode_only && chunks[c].tokens.size() == 1;
    if (!chunks[c].logits) continue;
    const SampleSpec& sp = sampling[i++];
    s.sampling[c] = {.temperature = sp.params.temperature,
                     .top_p = sp.params.top_p,
                     .top_k = sp.params.top_k,
                     .reserved = 0,
                     .seed = sp.params.seed,
                     .step = sp.step};
  }
  {
    prof::Range range("host/set_step");
    s.step = model_->set_step(slot, chunks, s.sampling, s.stream, dst);  // throws before touching the device
  }
  s.experts.clear();
  s.expert_rows.clear();
  s.sampled.clear();
}

void GpuHostBackend::begin(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling) {
  set_step(slot, chunks, sampling);
  Slot& s = at(slot);
  s.in_pass = true;
  launch(slot, s.begin, "begin");
}

void GpuHostBackend::stage(int slot, std::span<const cpu::SeqChunk> chunks, std::span<const SampleSpec> sampling,
                           void* dst) {
  set_step(slot, chunks, sampling, dst);
  QLLM_CUDA_CHECK(cudaStreamSynchronize(at(slot).stream));
}

int GpuHostBackend::run(int slot, const sched::Cursor& c) {
  Slot& s = at(slot);
  QLLM_CHECK_MSG(s.in_pass, "slot {}: a unit without a pass", slot);
  const ModelDesc& d = model_->desc();
  using graphs::UnitKind;
  switch (c.kind) {
    case sched::UnitKind::Attn: {
      const int b = graphs::bucket_of(s.step.rows, s.decode_only ? head_buckets_ : buckets_);
      QLLM_CHECK_MSG(b >= 0, "slot {}: {} rows exceed the largest attn bucket", slot, s.step.rows);
      launch(slot, (s.decode_only ? *decode_ : *table_).get(slot, UnitKind::Attn, c.layer, 0, b), "attn");
      const int units = model_->units(c.layer);
      {
        prof::Range range("host/count readback");
        const SlotPointers& p = model_->slot(slot).ptr();
        QLLM_CUDA_CHECK(cudaMemcpyAsync(s.counts, p.counts, size_t(units) * sizeof(int32_t),
                                        cudaMemcpyDeviceToHost, s.stream));
        QLLM_CUDA_CHECK(cudaMemcpyAsync(s.error, p.error, sizeof(int32_t), cudaMemcpyDeviceToHost, s.stream));
        QLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
      }
      check_error(slot, "attn unit");
      s.experts.clear();
      s.expert_rows.clear();
      const int most = s.step.rows * (d.is_moe_layer(c.layer) ? d.top_k : 1);
      for (int e = 0; e < units; ++e) {
        const int n = s.counts[e];
        QLLM_CHECK_MSG(n >= 0 && n <= s.step.rows, "slot {} layer {}: expert {} got {} of {} rows", slot, c.layer,
                       e, n, s.step.rows);
        if (n == 0) continue;
        s.experts.push_back(e);
        s.expert_rows.push_back(n);
      }
      int sum = 0;
      for (int n : s.expert_rows) sum += n;
      QLLM_CHECK_MSG(sum <= most, "slot {} layer {}: {} expert rows for {} rows", slot, c.layer, sum, s.step.rows);
      return int(s.experts.size());
    }
    case sched::UnitKind::Expert: {
      QLLM_CHECK_MSG(c.expert >= 0 && size_t(c.expert) < s.experts.size(), "slot {}: expert unit {} of {}", slot,
                     c.expert, s.experts.size());
      const size_t k = size_t(c.expert);
      const int b = graphs::bucket_of(s.expert_rows[k], buckets_);
      QLLM_CHECK(b >= 0);
      launch(slot, table_->get(slot, UnitKind::Expert, c.layer, s.experts[k], b), "expert");
      return 0;
    }
    case sched::UnitKind::Head: {
      const int n = int(s.step.logit_rows.size());
      if (n > 0) {
        const int b = graphs::bucket_of(n, head_buckets_);
        QLLM_CHECK(b >= 0);
        launch(slot, table_->get(slot, UnitKind::Head, 0, 0, b), "head");
      }
      {
        prof::Range range("host/token readback");
        const SlotPointers& p = model_->slot(slot).ptr();
        if (n > 0)
          QLLM_CUDA_CHECK(cudaMemcpyAsync(s.tokens, p.tokens_out, size_t(n) * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, s.stream));
        QLLM_CUDA_CHECK(cudaMemcpyAsync(s.error, p.error, sizeof(int32_t), cudaMemcpyDeviceToHost, s.stream));
        QLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
      }
      check_error(slot, "head unit");
      s.sampled.assign(s.tokens, s.tokens + n);
      s.in_pass = false;
      return 0;
    }
    case sched::UnitKind::Done:
      break;
  }
  QLLM_CHECK_MSG(false, "slot {}: no unit to run", slot);
  return 0;
}

std::vector<int32_t> GpuHostBackend::sampled(int slot) { return at(slot).sampled; }

std::vector<float> GpuHostBackend::logits(int slot) const {
  const Slot& s = *slots_.at(size_t(slot));
  const size_t n = s.step.logit_rows.size() * size_t(model_->desc().vocab);
  std::vector<float> out(n);
  if (n > 0)  // on the slot's stream, never the legacy one (the device loop may run meanwhile)
    QLLM_CUDA_CHECK(cudaMemcpyAsync(out.data(), model_->slot(slot).ptr().logits, n * sizeof(float),
                                    cudaMemcpyDeviceToHost, s.stream));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  return out;
}

}  // namespace qllm::gpu
