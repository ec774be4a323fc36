// Synthetic weights filled on the device equal the host generator bit for bit
// (engine/model/synthetic_weights.cpp, what `qllm make-model` writes): for real
// tensors of the Mixtral-8x7B and OLMoE-1B-7B shapes, at any alignment and
// length, from any starting index, with nothing written outside the range.
#include "engine/common/dtype.h"
#include "engine/model/make_model.h"
#include "engine/model/model_desc.h"
#include "engine/model/synthetic_weights.h"
#include "kernels/cuda_check.h"
#include "kernels/synthetic_fill.h"
#include "tests/gpu_test_util.h"
#include "tests/test_paths.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace qllm {
namespace {

constexpr uint16_t kGuard16 = 0xa5a5;
constexpr uint32_t kGuard32 = 0xa5a5a5a5u;
constexpr size_t kGuardElems = 16;  // untouched elements checked on each side

ModelDesc desc_of(const char* preset_dir) {
  return load_model_desc(test::data_dir() / "model" / preset_dir);
}

// Fills n elements at element offset `at` of a guarded device buffer and
// returns the whole buffer (guards included).
template <typename T, typename Bits>
std::vector<Bits> device_fill(uint64_t n, size_t at, const synth::SynthInit& init, uint64_t first,
                              Bits guard) {
  const size_t total = kGuardElems + at + n + kGuardElems;
  std::vector<Bits> host(total, guard);
  void* d = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&d, total * sizeof(Bits)));
  QLLM_CUDA_CHECK(cudaMemcpy(d, host.data(), total * sizeof(Bits), cudaMemcpyHostToDevice));
  T* out = static_cast<T*>(d) + kGuardElems + at;
  if constexpr (sizeof(T) == 2)
    cuda::synthetic_fill_bf16(out, n, init, first, nullptr);
  else
    cuda::synthetic_fill_f32(out, n, init, first, nullptr);
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  QLLM_CUDA_CHECK(cudaMemcpy(host.data(), d, total * sizeof(Bits), cudaMemcpyDeviceToHost));
  QLLM_CUDA_CHECK(cudaFree(d));
  return host;
}

// Host bits of element i (the file's BF16 / the generator's fp32).
uint16_t host_bf16(const synth::SynthInit& init, uint64_t i) {
  return f32_to_bf16(synth_weight(init, i, DType::BF16));
}
uint32_t host_f32(const synth::SynthInit& init, uint64_t i) {
  const float v = synth_weight(init, i, DType::F32);
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// Compares the filled range with the host and the guards with `guard`.
template <typename Bits, typename HostFn>
void expect_fill(const std::vector<Bits>& got, uint64_t n, size_t at, uint64_t first, Bits guard,
                 HostFn host) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool inside = i >= kGuardElems + at && i < kGuardElems + at + n;
    const Bits want = inside ? host(first + (i - kGuardElems - at)) : guard;
    if (got[i] != want && ++bad <= 5)
      ADD_FAILURE() << (inside ? "element " : "outside the range, element ")
                    << (int64_t(i) - int64_t(kGuardElems + at)) << ": device 0x" << std::hex << got[i]
                    << ", expected 0x" << want << std::dec;
  }
  EXPECT_EQ(bad, 0) << bad << " elements differ";
}

TEST(GpuSyntheticFill, RealTensorsEqualHostBitForBit) {
  QLLM_REQUIRE_GPU();
  struct Tensor {
    const char* model;
    TensorRole role;
    int layer, expert;
    uint64_t n;  // elements checked (the whole tensor or a large prefix)
  };
  // Norms (center 1), router (half width from hidden), projections, experts.
  const std::vector<Tensor> tensors = {
      {"mixtral-8x7b", TensorRole::InputNorm, 0, -1, 4096},
      {"mixtral-8x7b", TensorRole::Router, 3, -1, 8 * 4096},
      {"mixtral-8x7b", TensorRole::KProj, 31, -1, 1024 * 4096},
      {"mixtral-8x7b", TensorRole::ExpertGate, 1, 7, uint64_t(1) << 24},
      {"olmoe-1b-7b", TensorRole::QNorm, 2, -1, 2048},
      {"olmoe-1b-7b", TensorRole::Router, 0, -1, 64 * 2048},
      {"olmoe-1b-7b", TensorRole::ExpertDown, 15, 63, 2048 * 1024},
      {"olmoe-1b-7b", TensorRole::LmHead, -1, -1, uint64_t(1) << 22},
  };
  const uint64_t seed = 1234;
  for (const auto& t : tensors) {
    const ModelDesc d = desc_of(t.model);
    const synth::SynthInit init = synth_init(d, t.role, t.layer, t.expert, seed);
    SCOPED_TRACE(std::string(t.model) + " " + std::string(role_name(t.role)));
    expect_fill(device_fill<__nv_bfloat16, uint16_t>(t.n, 0, init, 0, kGuard16), t.n, 0, 0, kGuard16,
                [&](uint64_t i) { return host_bf16(init, i); });
    const uint64_t nf = std::min<uint64_t>(t.n, 1 << 20);
    expect_fill(device_fill<float, uint32_t>(nf, 0, init, 0, kGuard32), nf, 0, 0, kGuard32,
                [&](uint64_t i) { return host_f32(init, i); });
  }
}

// Every start alignment and short lengths exercise the scalar head and tail
// around the 16-byte vector body; `first` far beyond 2^32 the 64-bit index.
TEST(GpuSyntheticFill, AnyAlignmentLengthAndStart) {
  QLLM_REQUIRE_GPU();
  const synth::SynthInit init = synth_init(desc_of("mixtral-8x7b"), TensorRole::OProj, 5, -1, 7);
  for (uint64_t first : {uint64_t(0), uint64_t(13), uint64_t(5'000'000'123)}) {
    for (size_t at = 0; at < 8; ++at) {
      for (uint64_t n : {uint64_t(1), uint64_t(3), uint64_t(7), uint64_t(8), uint64_t(9), uint64_t(15),
                         uint64_t(16), uint64_t(17), uint64_t(1000), uint64_t(4097)}) {
        SCOPED_TRACE("first " + std::to_string(first) + " at " + std::to_string(at) + " n " +
                     std::to_string(n));
        expect_fill(device_fill<__nv_bfloat16, uint16_t>(n, at, init, first, kGuard16), n, at, first,
                    kGuard16, [&](uint64_t i) { return host_bf16(init, i); });
        if (at < 4)
          expect_fill(device_fill<float, uint32_t>(n, at, init, first, kGuard32), n, at, first, kGuard32,
                      [&](uint64_t i) { return host_f32(init, i); });
      }
    }
  }
  // n = 0 writes nothing.
  expect_fill(device_fill<__nv_bfloat16, uint16_t>(0, 3, init, 0, kGuard16), 0, 3, 0, kGuard16,
              [&](uint64_t i) { return host_bf16(init, i); });
}

// A fused expert tensor filled piece by piece, (expert, gate/up) at a time
// with the per-expert inits, holds the bytes `make-model --fused-experts`
// writes (SynthFill over the fused tensor).
TEST(GpuSyntheticFill, FusedGateUpPiecesEqualTheFusedFile) {
  QLLM_REQUIRE_GPU();
  const ModelDesc d = desc_of("olmoe-1b-7b");
  const uint64_t seed = 99, E = uint64_t(d.num_experts), I = uint64_t(d.expert_ffn), H = uint64_t(d.hidden);
  const int layer = 4;
  TensorSpec spec;
  spec.role = TensorRole::FusedGateUp;
  spec.layer = layer;
  const SynthFill fused(d, spec, DType::BF16, seed);

  const uint64_t total = E * 2 * I * H;  // 268M elements, 512 MiB
  void* raw = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&raw, total * 2));
  auto* dev = static_cast<__nv_bfloat16*>(raw);
  QLLM_CUDA_CHECK(cudaMemset(dev, 0xa5, total * 2));
  for (uint64_t e = 0; e < E; ++e)
    for (int part = 0; part < 2; ++part) {
      const auto role = part == 0 ? TensorRole::ExpertGate : TensorRole::ExpertUp;
      const synth::SynthInit init = synth_init(d, role, layer, int(e), seed);
      cuda::synthetic_fill_bf16(dev + (2 * e + uint64_t(part)) * I * H, I * H, init, 0, nullptr);
    }
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());

  // Windows around every piece boundary of a few experts, and the last element.
  std::vector<uint64_t> starts;
  for (uint64_t e : {uint64_t(0), uint64_t(1), uint64_t(31), E - 1})
    for (uint64_t part = 0; part < 2; ++part) starts.push_back((2 * e + part) * I * H);
  starts.push_back(total - 2048);
  const uint64_t window = 2048;
  for (uint64_t s : starts) {
    const uint64_t lo = s >= window / 2 ? s - window / 2 : 0;
    const uint64_t n = std::min(window, total - lo);
    std::vector<uint8_t> want(n * 2), got(n * 2);
    fused(lo * 2, want);
    QLLM_CUDA_CHECK(cudaMemcpy(got.data(), dev + lo, n * 2, cudaMemcpyDeviceToHost));
    EXPECT_EQ(std::memcmp(want.data(), got.data(), n * 2), 0) << "window at element " << lo;
  }
  QLLM_CUDA_CHECK(cudaFree(dev));
}

}  // namespace
}  // namespace qllm
