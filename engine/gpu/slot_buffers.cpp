#include "engine/gpu/slot_buffers.h"

#include "kernels/cuda_check.h"

namespace qllm::gpu {

DeviceKv::DeviceKv(const KvLayout& layout) : layout_(layout) {
  QLLM_CUDA_CHECK(cudaMalloc(&base_, layout_.total_bytes()));
  QLLM_CUDA_CHECK(cudaMemset(base_, 0, layout_.total_bytes()));
  // cudaMemset runs on the legacy stream, which the engine's non-blocking
  // streams do not wait for: finish it before any of them touches the cache.
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
}

DeviceKv::~DeviceKv() {
  if (base_) cudaFree(base_);
}

SlotBuffers::SlotBuffers(const SlotLayout& layout) : layout_(layout) {
  QLLM_CUDA_CHECK(cudaMalloc(&base_, layout_.bytes));
  QLLM_CUDA_CHECK(cudaMemset(base_, 0, layout_.bytes));
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());  // as DeviceKv: before any stream's first set_step
  QLLM_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_), layout_.step.bytes));
  QLLM_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
  auto* b = static_cast<uint8_t*>(base_);
  auto at = [&]<typename T>(T*& p, const Region& r) { p = reinterpret_cast<T*>(b + r.offset); };
  const StepLayout& s = layout_.step;  // at offset 0
  at(p_.rows, s.rows);
  at(p_.logit_count, s.logit_count);
  at(p_.zero, s.zero);
  at(p_.tokens, s.tokens);
  at(p_.pos, s.pos);
  at(p_.seq, s.seq);
  at(p_.kv_slot, s.kv_slot);
  at(p_.tables, s.tables);
  at(p_.logit_rows, s.logit_rows);
  at(p_.sampling, s.sampling);
  const SlotLayout& L = layout_;
  at(p_.x, L.x);
  at(p_.normed, L.normed);
  at(p_.qkv, L.qkv);
  at(p_.attn_out, L.attn_out);
  at(p_.router_logits, L.router_logits);
  at(p_.topk_ids, L.topk_ids);
  at(p_.topk_w, L.topk_w);
  at(p_.counts, L.counts);
  at(p_.offsets, L.offsets);
  at(p_.list_rows, L.list_rows);
  at(p_.list_w, L.list_w);
  at(p_.expert_in, L.expert_in);
  at(p_.gate_up, L.gate_up);
  at(p_.act, L.act);
  at(p_.down, L.down);
  at(p_.head_in, L.head_in);
  at(p_.logits, L.logits);
  at(p_.tokens_out, L.tokens_out);
  at(p_.error, L.error);
  p_.attn_ws = L.attn_ws.bytes ? b + L.attn_ws.offset : nullptr;
  p_.sampling_ws = b + L.sampling_ws.offset;
  p_.gemm_ws = b + L.gemm_ws.offset;
}

SlotBuffers::~SlotBuffers() {
  if (copied_) {
    cudaEventSynchronize(copied_);
    cudaEventDestroy(copied_);
  }
  if (pinned_) cudaFreeHost(pinned_);
  if (base_) cudaFree(base_);
}

StepInfo SlotBuffers::set_step(const KvGeometry& kv, int vocab, std::span<const cpu::SeqChunk> chunks,
                               std::span<const cuda::SamplingRow> sampling, cudaStream_t stream, void* dst) {
  QLLM_CUDA_CHECK(cudaEventSynchronize(copied_));
  StepInfo info = pack_step(layout_.step, kv, vocab, chunks, sampling, std::span(pinned_, layout_.step.bytes));
  QLLM_CUDA_CHECK(cudaMemcpyAsync(dst ? dst : base_, pinned_, layout_.step.bytes, cudaMemcpyHostToDevice, stream));
  QLLM_CUDA_CHECK(cudaEventRecord(copied_, stream));
  return info;
}

int32_t SlotBuffers::error(cudaStream_t stream) const {
  int32_t e = 0;
  QLLM_CUDA_CHECK(cudaMemcpyAsync(&e, p_.error, sizeof(e), cudaMemcpyDeviceToHost, stream));
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return e;
}

void SlotBuffers::clear_error(cudaStream_t stream) {
  QLLM_CUDA_CHECK(cudaMemsetAsync(p_.error, 0, sizeof(int32_t), stream));
}

}  // namespace qllm::gpu
