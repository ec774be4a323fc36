#include "engine/cpu/attention.h"

#include "engine/common/error.h"
#include "engine/cpu/ops.h"

#include <algorithm>
#include <cmath>

namespace qllm::cpu {

void paged_attention(const float* q, const PagedKv& kv, int layer, std::span<const int> pos,
                     std::span<const int> seq, std::span<const std::vector<int32_t>> tables,
                     const AttentionShape& shape, float* out) {
  const int nh = shape.heads, hd = shape.head_dim;
  QLLM_CHECK(nh > 0 && shape.kv_heads > 0 && nh % shape.kv_heads == 0 && hd > 0);
  QLLM_CHECK(pos.size() == seq.size());
  const int qd = nh * hd, group = nh / shape.kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int bs = kv.block_size;
  std::vector<float> scores;
  std::vector<int64_t> key_slots;
  for (size_t t = 0; t < pos.size(); ++t) {
    if (seq[t] < 0) continue;
    const int p = pos[t];
    const auto& table = tables[size_t(seq[t])];
    const int lo = shape.window > 0 ? std::max(0, p - shape.window + 1) : 0;
    key_slots.resize(size_t(p - lo + 1));
    for (int j = lo; j <= p; ++j)
      key_slots[size_t(j - lo)] = int64_t(table[size_t(j / bs)]) * bs + j % bs;
    scores.resize(key_slots.size());
    for (int h = 0; h < nh; ++h) {
      const int kvh = h / group;
      const float* qh = q + int64_t(t) * qd + int64_t(h) * hd;
      for (size_t j = 0; j < key_slots.size(); ++j) {
        const float* kj = kv.k_at(layer, key_slots[j]) + int64_t(kvh) * hd;
        float s = 0;
        for (int i = 0; i < hd; ++i) s += qh[i] * kj[i];
        scores[j] = s * scale;
      }
      softmax(scores.data(), int64_t(scores.size()));
      float* o = out + int64_t(t) * qd + int64_t(h) * hd;
      std::fill_n(o, hd, 0.0f);
      for (size_t j = 0; j < key_slots.size(); ++j) {
        const float* vj = kv.v_at(layer, key_slots[j]) + int64_t(kvh) * hd;
        const float w = scores[j];
        for (int i = 0; i < hd; ++i) o[i] += w * vj[i];
      }
    }
  }
}

}  // namespace qllm::cpu
