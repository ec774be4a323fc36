// engine/gpu/device_weights: the weights of a checkpoint on the GPU.
//   * upload of a bf16 file (per-expert and fused expert layouts) puts the
//     file's bytes, bit for bit, where layout.h says: checked tensor by tensor
//     against the mapped file for every tensor of the tiny models;
//   * synthetic weights made on the device from the description and seed
//     alone equal, byte for byte over the whole allocation, the upload of the
//     file make-model writes (so their keys are make-model's);
//   * an F32 file uploads to the same bytes (round to nearest even on the
//     host), max_layers keeps a prefix, a tied LM head is the embedding.
#include "engine/common/progress.h"
#include "engine/gpu/device_weights.h"
#include "engine/model/make_model.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"
#include "tests/test_paths.h"

using namespace qllm;
using namespace qllm::test;

namespace {

constexpr uint64_t kSeed = 23;

Checkpoint make_ckpt(const std::string& arch, DType dt, bool fused, const std::string& tag, bool tied = false) {
  Progress::set_enabled(false);
  MakeModelOptions o;
  o.out_dir = temp_dir("gpuweights-" + arch + "-" + tag);
  o.arch = arch;
  o.dtype = dt;
  o.fused_experts = fused;
  o.seed = kSeed;
  o.force = true;
  o.progress = false;
  make_model(o);
  ModelDesc d = load_model_desc(o.out_dir);
  d.tie_word_embeddings = tied;
  CheckpointOptions co;
  co.progress = false;
  return Checkpoint::open(o.out_dir, d, co);
}

std::vector<uint8_t> blob(const gpu::DeviceWeights& w) {
  std::vector<uint8_t> v(w.bytes());
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  QLLM_CUDA_CHECK(cudaMemcpy(v.data(), w.data(), v.size(), cudaMemcpyDeviceToHost));
  return v;
}

// Every piece of the layout holds its tensor's bytes from the file.
void expect_file_bytes(const Checkpoint& ck, const gpu::DeviceWeights& w, const std::vector<uint8_t>& got) {
  for (const auto& p : w.layout().pieces) {
    const MatrixView v = ck.weight(p.role, p.layer, p.expert);
    ASSERT_EQ(v.dtype, DType::BF16);
    std::vector<uint8_t> want;
    for (int64_t r = 0; r < v.rows; ++r) want.insert(want.end(), v.row(r), v.row(r) + v.row_bytes());
    const std::vector<uint8_t> have(got.begin() + std::ptrdiff_t(p.offset),
                                    got.begin() + std::ptrdiff_t(p.offset + want.size()));
    EXPECT_TRUE(bits_equal(have, want, std::string(role_name(p.role)) + " layer " + std::to_string(p.layer) +
                                           " expert " + std::to_string(p.expert)));
  }
}

class GpuDeviceWeights : public ::testing::TestWithParam<const char*> {};

TEST_P(GpuDeviceWeights, UploadIsTheFileAndSyntheticIsTheUpload) {
  QLLM_REQUIRE_GPU();
  const std::string arch = GetParam();
  Stream st;
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused experts" : "per-expert");
    const Checkpoint ck = make_ckpt(arch, DType::BF16, fused, fused ? "fused" : "per");
    const auto up = gpu::DeviceWeights::upload(ck, st.get(), {.progress = false});
    const auto up_bytes = blob(up);
    expect_file_bytes(ck, up, up_bytes);
    const auto syn = gpu::DeviceWeights::synthetic(ck.desc(), kSeed, st.get());
    ASSERT_EQ(syn.bytes(), up.bytes());
    EXPECT_TRUE(bits_equal(blob(syn), up_bytes, "synthetic weights against the uploaded file"));
    // A different seed gives different weights (the seed is used).
    const auto other = gpu::DeviceWeights::synthetic(ck.desc(), kSeed + 1, st.get());
    EXPECT_FALSE(bits_equal(blob(other), up_bytes, "another seed"));
  }
}

TEST_P(GpuDeviceWeights, F32FileUploadsToTheSameBf16) {
  QLLM_REQUIRE_GPU();
  const std::string arch = GetParam();
  Stream st;
  const Checkpoint f32 = make_ckpt(arch, DType::F32, false, "f32");
  // A small staging buffer: many chunks, some ending inside rows.
  const auto up = gpu::DeviceWeights::upload(f32, st.get(), {.progress = false, .staging_bytes = 1000});
  const auto syn = gpu::DeviceWeights::synthetic(f32.desc(), kSeed, st.get());
  EXPECT_TRUE(bits_equal(blob(up), blob(syn), "F32 file through host rounding against synthetic bf16"));
}

TEST_P(GpuDeviceWeights, MaxLayersKeepsAPrefix) {
  QLLM_REQUIRE_GPU();
  const std::string arch = GetParam();
  Stream st;
  const Checkpoint ck = make_ckpt(arch, DType::BF16, false, "prefix");
  const auto all = gpu::DeviceWeights::upload(ck, st.get(), {.progress = false});
  const auto one = gpu::DeviceWeights::upload(ck, st.get(), {.max_layers = 1, .progress = false});
  EXPECT_EQ(one.desc().layers, 1);
  EXPECT_EQ(one.bytes(), all.layout().layers[0].end);
  const auto a = blob(all), o = blob(one);
  EXPECT_TRUE(bits_equal(o, slice(a, 0, o.size()), "first layer"));
  const auto syn1 = gpu::DeviceWeights::synthetic(ck.desc(), kSeed, st.get(), 1);
  EXPECT_TRUE(bits_equal(blob(syn1), o, "synthetic first layer"));
}

INSTANTIATE_TEST_SUITE_P(Tiny, GpuDeviceWeights, ::testing::Values("mixtral", "qwen3_moe", "olmoe"));

TEST(GpuDeviceWeightsTied, LmHeadIsTheEmbedding) {
  QLLM_REQUIRE_GPU();
  Stream st;
  const Checkpoint ck = make_ckpt("qwen3_moe", DType::BF16, false, "tied", true);
  const auto w = gpu::DeviceWeights::upload(ck, st.get(), {.progress = false});
  EXPECT_EQ(w.lm_head(), w.embed());
  const auto u = gpu::DeviceWeights::upload(make_ckpt("qwen3_moe", DType::BF16, false, "untied"), st.get(),
                                            {.progress = false});
  EXPECT_NE(u.lm_head(), u.embed());
  EXPECT_EQ(u.bytes() - w.bytes(), uint64_t(u.desc().vocab) * uint64_t(u.desc().hidden) * 2);
}

}  // namespace
