#include "engine/gpu/device_weights.h"

#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/model/make_model.h"
#include "kernels/cuda_check.h"
#include "kernels/synthetic_fill.h"
#include "profiling/nvtx.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

namespace qllm::gpu {
namespace {

// Two pinned host buffers: one converts while the other's copy runs.
class Staging {
 public:
  explicit Staging(uint64_t bytes) : elems_(std::max<uint64_t>(bytes / 2, 1)) {
    for (auto& s : bufs_) {
      QLLM_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&s.host), elems_ * 2));
      QLLM_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
    }
  }
  ~Staging() {
    for (auto& s : bufs_) {
      if (s.copied) cudaEventSynchronize(s.copied);
      if (s.copied) cudaEventDestroy(s.copied);
      if (s.host) cudaFreeHost(s.host);
    }
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  uint64_t elems() const { return elems_; }
  // Converts elements [first, first + n) of m and copies them to dst.
  void copy(const MatrixView& m, int64_t first, int64_t n, uint8_t* dst, cudaStream_t stream) {
    Buf& b = bufs_[next_];
    next_ ^= 1;
    QLLM_CUDA_CHECK(cudaEventSynchronize(b.copied));  // its previous copy has left the buffer
    to_bf16(m, first, n, b.host);
    QLLM_CUDA_CHECK(cudaMemcpyAsync(dst, b.host, uint64_t(n) * 2, cudaMemcpyHostToDevice, stream));
    QLLM_CUDA_CHECK(cudaEventRecord(b.copied, stream));
  }

 private:
  struct Buf {
    uint16_t* host = nullptr;
    cudaEvent_t copied = nullptr;
  };
  uint64_t elems_;
  Buf bufs_[2];
  int next_ = 0;
};

}  // namespace

ModelDesc keep_layers(const ModelDesc& d, int max_layers) {
  ModelDesc out = d;
  if (max_layers > 0 && max_layers < d.layers) {
    out.layers = max_layers;
    out.is_moe.resize(size_t(max_layers));
  }
  return out;
}

void to_bf16(const MatrixView& m, int64_t first, int64_t n, uint16_t* out) {
  QLLM_CHECK_MSG(first >= 0 && n >= 0 && first + n <= m.numel(), "to_bf16: elements [{}, {}) of {} ({} elements)", first,
                 first + n, m.tensor, m.numel());
  constexpr int64_t kTmp = 4096;
  float tmp[kTmp];
  const size_t es = m.elem_size();
  int64_t r = m.cols > 0 ? first / m.cols : 0, c = m.cols > 0 ? first % m.cols : 0;
  while (n > 0) {
    const int64_t k = std::min({n, m.cols - c, kTmp});
    const uint8_t* src = m.row(r) + size_t(c) * es;
    if (m.dtype == DType::BF16) {
      std::memcpy(out, src, size_t(k) * 2);
    } else {
      to_f32(m.dtype, src, tmp, size_t(k));
      from_f32(DType::BF16, tmp, out, size_t(k));
    }
    out += k;
    n -= k;
    c += k;
    if (c == m.cols) {
      c = 0;
      ++r;
    }
  }
}

DeviceWeights::DeviceWeights(const ModelDesc& d) : desc_(d), layout_(plan_weight_layout(d, DType::BF16)) {
  QLLM_CUDA_CHECK(cudaMalloc(&base_, layout_.total_bytes));
  for (const auto& L : layout_.layers) {
    LayerWeights w;
    w.input_norm = at(L.input_norm);
    w.post_norm = at(L.post_norm);
    w.qkv = at(L.qkv);
    w.o = at(L.o);
    if (L.qk_norm) {
      w.q_norm = at(L.q_norm);
      w.k_norm = at(L.k_norm);
    }
    if (L.moe) w.router = at(L.router);
    w.mlps = L.mlps;
    w.ffn = L.ffn;
    for (int m = 0; m < L.mlps; ++m) {
      w.gate_up.push_back(at(L.gate_up[size_t(m)]));
      w.down.push_back(at(L.down[size_t(m)]));
    }
    layers_.push_back(std::move(w));
  }
}

DeviceWeights::DeviceWeights(DeviceWeights&& o) noexcept
    : desc_(std::move(o.desc_)), layout_(std::move(o.layout_)), base_(std::exchange(o.base_, nullptr)),
      layers_(std::move(o.layers_)) {}

DeviceWeights& DeviceWeights::operator=(DeviceWeights&& o) noexcept {
  std::swap(desc_, o.desc_);
  std::swap(layout_, o.layout_);
  std::swap(base_, o.base_);
  std::swap(layers_, o.layers_);
  return *this;
}

DeviceWeights::~DeviceWeights() {
  if (base_) cudaFree(base_);
}

DeviceWeights DeviceWeights::upload(const Checkpoint& ck, cudaStream_t stream, const UploadOptions& opts) {
  prof::Range range("gpu/upload_weights");
  DeviceWeights w(keep_layers(ck.desc(), opts.max_layers));
  auto* base = static_cast<uint8_t*>(w.base_);
  QLLM_CUDA_CHECK(cudaMemsetAsync(base, 0, w.layout_.total_bytes, stream));
  uint64_t total = 0;
  for (const auto& p : w.layout_.pieces) total += uint64_t(p.numel()) * 2;
  std::optional<Progress> progress;
  if (opts.progress) progress.emplace(fmt::format("upload {} to the GPU", ck.dir().filename().string()), total);
  {
    Staging staging(opts.staging_bytes);
    for (const auto& p : w.layout_.pieces) {
      const MatrixView v = ck.weight(p.role, p.layer, p.expert);
      if (v.rows != p.rows || v.cols != p.cols)
        fail("{}: tensor '{}' is [{}, {}], expected [{}, {}] for {}", ck.dir().string(), v.tensor, v.rows, v.cols,
             p.rows, p.cols, role_name(p.role));
      for (int64_t done = 0; done < p.numel();) {
        const int64_t n = std::min<int64_t>(p.numel() - done, int64_t(staging.elems()));
        staging.copy(v, done, n, base + p.offset + uint64_t(done) * 2, stream);
        done += n;
        if (progress) progress->add(uint64_t(n) * 2);
      }
    }
    QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  if (progress) progress->finish();
  return w;
}

DeviceWeights DeviceWeights::synthetic(const ModelDesc& d, uint64_t seed, cudaStream_t stream, int max_layers) {
  prof::Range range("gpu/synthetic_weights");
  DeviceWeights w(keep_layers(d, max_layers));
  auto* base = static_cast<uint8_t*>(w.base_);
  QLLM_CUDA_CHECK(cudaMemsetAsync(base, 0, w.layout_.total_bytes, stream));
  for (const auto& p : w.layout_.pieces) {
    const synth::SynthInit init = synth_init(w.desc_, p.role, p.layer, p.expert, seed);
    cuda::synthetic_fill_bf16(reinterpret_cast<bf16*>(base + p.offset), uint64_t(p.numel()), init, 0, stream);
  }
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return w;
}

}  // namespace qllm::gpu
