#include "engine/gpu/step_metadata.h"

#include "engine/common/error.h"

#include <algorithm>

namespace qllm::gpu {
namespace {

template <typename T>
void put(std::span<std::byte> out, const Region& r, const std::vector<T>& v) {
  QLLM_CHECK(v.size() * sizeof(T) <= r.bytes);
  if (!v.empty()) std::memcpy(out.data() + r.offset, v.data(), v.size() * sizeof(T));
}

}  // namespace

StepInfo pack_step(const StepLayout& L, const KvGeometry& kv, int vocab, std::span<const cpu::SeqChunk> chunks,
                   std::span<const cuda::SamplingRow> sampling, std::span<std::byte> out) {
  QLLM_CHECK_MSG(out.size() >= L.bytes, "pack_step: {} bytes for a block of {}", out.size(), L.bytes);
  QLLM_CHECK(kv.block_size >= 1 && kv.num_blocks >= 1);
  if (!sampling.empty() && sampling.size() != chunks.size())
    fail("a pass of {} sequences got {} sampling rows (one per sequence, or none)", chunks.size(), sampling.size());
  if (chunks.size() > size_t(L.seqs_cap))
    fail("a pass of {} sequences does not fit the slot's {} sequences per step", chunks.size(), L.seqs_cap);
  size_t total = 0;
  for (const auto& ch : chunks) total += ch.tokens.size();
  if (total == 0) fail("a forward pass needs at least one token");
  if (total > size_t(L.rows_cap))
    fail("a pass of {} tokens does not fit the slot's {} tokens per step", total, L.rows_cap);

  const size_t T = size_t(L.rows_cap), S = size_t(L.seqs_cap), B = size_t(L.max_blocks_per_seq);
  std::vector<int32_t> tokens(T, -1), pos(T, -1), seq(T, -1), tables(S * B, -1), logit_rows(S, -1);
  std::vector<int64_t> slot(T, -1);
  std::vector<cuda::SamplingRow> params(S);
  StepInfo info;

  size_t t = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const auto& ch = chunks[c];
    const int64_t end = int64_t(ch.start_pos) + int64_t(ch.tokens.size());
    if (ch.start_pos < 0 || int64_t(ch.block_table.size()) * kv.block_size < end)
      fail("sequence {} of the pass: its block table ({} blocks of {}) does not cover positions up to {}", c,
           ch.block_table.size(), kv.block_size, end);
    if (ch.block_table.size() > B)
      fail("sequence {} of the pass: its block table has {} blocks, more than the slot's {} per sequence", c,
           ch.block_table.size(), B);
    for (size_t j = 0; j < ch.block_table.size(); ++j) {
      const int32_t b = ch.block_table[j];
      if (b < 0 || b >= kv.num_blocks)
        fail("sequence {} of the pass: block {} is outside the KV cache's {} blocks", c, b, kv.num_blocks);
      tables[c * B + j] = b;
    }
    for (size_t i = 0; i < ch.tokens.size(); ++i, ++t) {
      const int32_t id = ch.tokens[i];
      if (id < 0 || id >= vocab) fail("token id {} is outside the vocabulary [0, {})", id, vocab);
      const int p = ch.start_pos + int(i);
      tokens[t] = id;
      pos[t] = p;
      seq[t] = int32_t(c);
      slot[t] = int64_t(ch.block_table[size_t(p / kv.block_size)]) * kv.block_size + p % kv.block_size;
    }
    if (ch.logits && !ch.tokens.empty()) {
      const size_t r = info.logit_rows.size();
      logit_rows[r] = int32_t(t - 1);
      if (!sampling.empty()) params[r] = sampling[c];
      info.logit_rows.push_back(int(t - 1));
      info.logit_seq.push_back(int(c));
    }
  }
  info.rows = int(t);

  std::fill(out.begin(), out.begin() + std::ptrdiff_t(L.bytes), std::byte{0});
  put(out, L.rows, std::vector<int32_t>{info.rows});
  put(out, L.logit_count, std::vector<int32_t>{int32_t(info.logit_rows.size())});
  put(out, L.zero, std::vector<int32_t>{0});
  put(out, L.tokens, tokens);
  put(out, L.pos, pos);
  put(out, L.seq, seq);
  put(out, L.kv_slot, slot);
  put(out, L.tables, tables);
  put(out, L.logit_rows, logit_rows);
  put(out, L.sampling, params);
  return info;
}

}  // namespace qllm::gpu
