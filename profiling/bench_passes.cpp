#include "profiling/bench_passes.h"

#include "engine/common/error.h"
#include "graphs/graph_table.h"
#include "kernels/cuda_check.h"

#include <algorithm>
#include <numeric>

namespace qllm::bench {
namespace {

int32_t token_id(int64_t i, int vocab) { return int32_t((uint64_t(i) * 2654435761u + 17) % uint64_t(vocab)); }

sched::Cursor attn_unit(int l) { return {sched::UnitKind::Attn, int16_t(l), 0}; }
sched::Cursor expert_unit(int l, int k) { return {sched::UnitKind::Expert, int16_t(l), int16_t(k)}; }
sched::Cursor head_unit() { return {sched::UnitKind::Head, 0, 0}; }

}  // namespace

PassInput decode_pass(int batch, int context, int block_size, int vocab) {
  PassInput p;
  const int nb = ceil_div(context + 1, block_size);
  for (int i = 0; i < batch; ++i) {
    p.tokens.push_back({token_id(i, vocab)});
    auto table = std::vector<int32_t>(size_t(nb));
    std::iota(table.begin(), table.end(), i * nb);
    p.tables.push_back(std::move(table));
  }
  for (int i = 0; i < batch; ++i) {
    p.chunks.push_back({.tokens = p.tokens[size_t(i)], .start_pos = context, .block_table = p.tables[size_t(i)],
                        .logits = true});
    p.sampling.push_back(SampleSpec{});
  }
  p.rows = batch;
  p.decode_only = true;
  return p;
}

std::vector<PassInput> prefill_passes(int prompt, int chunk, int block_size, int vocab) {
  auto table = std::vector<int32_t>(size_t(ceil_div(prompt, block_size)));
  std::iota(table.begin(), table.end(), 0);
  std::vector<PassInput> passes;
  for (int start = 0; start < prompt; start += chunk) {
    const int n = std::min(chunk, prompt - start);
    PassInput p;
    auto toks = std::vector<int32_t>(size_t(n));
    for (int t = 0; t < n; ++t) toks[size_t(t)] = token_id(1000003 + start + t, vocab);
    p.tokens.push_back(std::move(toks));
    p.tables.push_back(table);
    const bool last = start + n == prompt;
    p.chunks.push_back({.tokens = p.tokens[0], .start_pos = start, .block_table = p.tables[0], .logits = last});
    if (last) p.sampling.push_back(SampleSpec{});
    p.rows = n;
    p.decode_only = n == 1;
    passes.push_back(std::move(p));
  }
  return passes;
}

void host_pass(gpu::GpuHostBackend& b, const PassInput& p) {
  b.begin(0, p.chunks, p.sampling);
  for (int l = 0; l < b.desc().layers; ++l) {
    const int n = b.run(0, attn_unit(l));
    for (int k = 0; k < n; ++k) b.run(0, expert_unit(l, k));
  }
  b.run(0, head_unit());
}

Routing recorded_pass(gpu::GpuHostBackend& b, const PassInput& p) {
  cudaStream_t s = b.stream(0);
  Routing r(size_t(b.desc().layers));
  std::vector<int32_t> counts;
  b.begin(0, p.chunks, p.sampling);
  for (int l = 0; l < b.desc().layers; ++l) {
    const int n = b.run(0, attn_unit(l));  // synchronised: the counts are final
    counts.assign(size_t(b.model().units(l)), 0);
    QLLM_CUDA_CHECK(cudaMemcpyAsync(counts.data(), b.model().slot(0).ptr().counts, counts.size() * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, s));
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s));
    for (size_t e = 0; e < counts.size(); ++e)
      if (counts[e] > 0) r[size_t(l)].emplace_back(int(e), counts[e]);
    if (int(r[size_t(l)].size()) != n)
      fail("layer {}: the backend reported {} experts with rows, the counts say {}", l, n, r[size_t(l)].size());
    for (int k = 0; k < n; ++k) b.run(0, expert_unit(l, k));
  }
  b.run(0, head_unit());
  return r;
}

void launch(cudaGraphExec_t g, cudaStream_t s, const char* what) {
  QLLM_CHECK_MSG(g != nullptr, "no graph captured for {}", what);
  QLLM_CUDA_CHECK(cudaGraphLaunch(g, s));
}

void replay_pass(gpu::GpuHostBackend& b, const PassInput& p, const Routing& r) {
  using graphs::UnitKind;
  cudaStream_t s = b.stream(0);
  const graphs::GraphTable& units = b.graph_table();
  const graphs::GraphTable& attn = p.decode_only ? b.decode_attn_table() : units;
  const int head_buckets = b.decode_attn_table().shape().buckets;  // Rl: the head's buckets too
  const int ab = graphs::bucket_of(p.rows, attn.shape().buckets);
  QLLM_CHECK_MSG(ab >= 0, "{} rows exceed the largest attn bucket", p.rows);
  b.begin(0, p.chunks, p.sampling);
  for (int l = 0; l < b.desc().layers; ++l) {
    launch(attn.get(0, UnitKind::Attn, l, 0, ab), s, "attn");
    for (const auto& [id, rows] : r[size_t(l)])
      launch(units.get(0, UnitKind::Expert, l, id, graphs::bucket_of(rows, units.shape().buckets)), s, "expert");
  }
  if (!p.sampling.empty())
    launch(units.get(0, UnitKind::Head, 0, 0, graphs::bucket_of(int(p.sampling.size()), head_buckets)), s, "head");
}

void check_device_error(gpu::GpuHostBackend& b, const char* what) {
  const int32_t word = b.model().slot(0).error(b.stream(0));
  if (word == 0) return;
  b.model().slot(0).clear_error(b.stream(0));
  fail("{}: {}", what, gpu::error_word_meaning(word));
}

Traffic pass_traffic(const ModelDesc& d, const Routing& r, int batch, int context) {
  const DecodeTraffic t = d.decode_bytes_per_token(DType::BF16);
  Traffic out;
  out.weights = t.attention + t.norms + t.router + t.dense_mlp + t.lm_head + int64_t(batch) * t.embed_row;
  const int64_t expert = 3 * int64_t(d.hidden) * d.expert_ffn * int64_t(dtype_size(DType::BF16));
  for (int l = 0; l < d.layers; ++l)
    if (d.is_moe_layer(l)) out.weights += int64_t(r[size_t(l)].size()) * expert;
  // context + 1 positions read (the new one included), 1 written, per sequence
  out.kv = int64_t(batch) * (int64_t(context) + 2) * d.kv_bytes_per_token(DType::BF16);
  return out;
}

}  // namespace qllm::bench
