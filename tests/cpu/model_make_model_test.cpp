// make_model: presets, options, overwrite protection, determinism, tokenizer
// files, and the counter-based generator shared with the GPU.
#include "engine/common/error.h"
#include "engine/model/checkpoint.h"
#include "engine/model/make_model.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include "tests/test_errors.h"
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace qllm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using qllm::test::error_of;

MakeModelOptions opts(const std::string& name, const std::string& arch = "mixtral") {
  MakeModelOptions o;
  o.out_dir = test::temp_dir("make-" + name);
  o.arch = arch;
  o.progress = false;
  return o;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

json read_json(const fs::path& p) { return json::parse(slurp(p)); }

// Real-shape presets: the dry run gives the published parameter totals (see
// model_desc_test.cpp for how they were cross-checked) and the same ModelDesc
// as the published config.json in tests/data/model.
TEST(MakeModel, RealPresetsDryRun) {
  struct Want {
    const char* preset;
    const char* fixture;
    int64_t params;
  };
  for (const Want w : {Want{"mixtral-8x7b", "mixtral-8x7b", 46'702'792'704},
                       Want{"qwen3-30b-a3b", "qwen3-30b-a3b", 30'532'122'624},
                       Want{"olmoe-1b-7b", "olmoe-1b-7b", 6'919'161'856}}) {
    MakeModelOptions o;
    o.preset = w.preset;  // the arch follows from the preset
    o.dry_run = true;
    const MakeModelResult r = make_model(o);
    EXPECT_EQ(r.desc.param_count(), w.params) << w.preset;
    EXPECT_EQ(r.total_bytes, uint64_t(w.params) * 2) << w.preset;
    EXPECT_EQ(r.weight_files, std::vector<std::string>{"model.safetensors"});
    const ModelDesc pub = load_model_desc(test::data_dir() / "model" / w.fixture);
    EXPECT_EQ(r.desc.arch, pub.arch);
    EXPECT_EQ(r.desc.hidden, pub.hidden);
    EXPECT_EQ(r.desc.layers, pub.layers);
    EXPECT_EQ(r.desc.heads, pub.heads);
    EXPECT_EQ(r.desc.kv_heads, pub.kv_heads);
    EXPECT_EQ(r.desc.head_dim, pub.head_dim);
    EXPECT_EQ(r.desc.vocab, pub.vocab);
    EXPECT_EQ(r.desc.max_positions, pub.max_positions);
    EXPECT_EQ(r.desc.num_experts, pub.num_experts);
    EXPECT_EQ(r.desc.top_k, pub.top_k);
    EXPECT_EQ(r.desc.expert_ffn, pub.expert_ffn);
    EXPECT_EQ(r.desc.norm_topk_prob, pub.norm_topk_prob);
    EXPECT_EQ(r.desc.qk_norm, pub.qk_norm);
    EXPECT_EQ(r.desc.rope_theta, pub.rope_theta);
    EXPECT_EQ(r.desc.rms_eps, pub.rms_eps);
  }
  MakeModelOptions o;
  o.preset = "mixtral-8x7b";
  o.dry_run = true;
  o.max_shard_bytes = 5ull << 30;
  const MakeModelResult r = plan_model(o);
  EXPECT_EQ(r.weight_files.size(), 18u);  // 93.4 GB in shards of at most 5 GiB
  EXPECT_EQ(r.weight_files.back(), "model-00018-of-00018.safetensors");
}

TEST(MakeModel, TinyFolders) {
  for (const char* arch : {"mixtral", "qwen3_moe", "olmoe"}) {
    MakeModelOptions o = opts(std::string("tiny-") + arch, arch);
    const MakeModelResult r = make_model(o);
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json"})
      EXPECT_TRUE(fs::exists(o.out_dir / f)) << arch << " " << f;
    EXPECT_LT(fs::file_size(o.out_dir / "model.safetensors"), 4u << 20);
    const json c = read_json(o.out_dir / "config.json");
    EXPECT_EQ(c, r.config);
    EXPECT_EQ(c["architectures"][0], std::string(arch_class_name(r.desc.arch)));
    EXPECT_EQ(c["model_type"], arch);
    for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                            "vocab_size", "num_experts_per_tok", "intermediate_size", "rms_norm_eps",
                            "max_position_embeddings", "rope_parameters", "tie_word_embeddings", "dtype",
                            "bos_token_id", "eos_token_id"})
      EXPECT_TRUE(c.contains(key)) << arch << " " << key;
    EXPECT_EQ(c["dtype"], "bfloat16");
    EXPECT_EQ(r.desc.vocab, 512);  // the generated tokenizer's size
    EXPECT_EQ(r.desc.hidden, 64);
    EXPECT_GE(r.desc.num_experts, 4);
    EXPECT_EQ(r.desc.top_k, 2);
    ASSERT_EQ(r.desc.eos_token_ids.size(), 1u);
    EXPECT_LT(r.desc.eos_token_ids[0], 512);
    EXPECT_TRUE(load_model_desc(o.out_dir).generation.present);
  }
  const MakeModelResult q = plan_model(opts("tiny-plan", "qwen3_moe"));
  EXPECT_EQ(q.desc.is_moe, (std::vector<bool>{true, false, true}));  // a dense layer
  EXPECT_NE(q.desc.q_dim(), q.desc.hidden);                           // head_dim as Qwen3 uses it
  EXPECT_EQ(q.desc.qk_norm, QkNorm::PerHead);
  EXPECT_EQ(plan_model(opts("tiny-plan", "olmoe")).desc.qk_norm, QkNorm::FullWidth);
}

TEST(MakeModel, LayersAndDtypeOptions) {
  MakeModelOptions o = opts("layers", "qwen3_moe");
  o.layers = 1;  // the preset's dense layer 1 no longer exists
  o.dtype = DType::F16;
  const MakeModelResult r = make_model(o);
  EXPECT_EQ(r.desc.layers, 1);
  EXPECT_EQ(r.desc.is_moe, std::vector<bool>{true});
  EXPECT_EQ(r.config["dtype"], "float16");
  const Checkpoint ck = Checkpoint::open(o.out_dir, CheckpointOptions{.progress = false});
  EXPECT_EQ(ck.embed().dtype, DType::F16);
}

TEST(MakeModel, Deterministic) {
  MakeModelOptions a = opts("det-a", "olmoe"), b = opts("det-b", "olmoe"), c = opts("det-c", "olmoe");
  a.seed = b.seed = 3;
  c.seed = 4;
  make_model(a);
  make_model(b);
  make_model(c);
  EXPECT_EQ(slurp(a.out_dir / "model.safetensors"), slurp(b.out_dir / "model.safetensors"));
  EXPECT_NE(slurp(a.out_dir / "model.safetensors"), slurp(c.out_dir / "model.safetensors"));
  EXPECT_EQ(slurp(a.out_dir / "config.json"), slurp(c.out_dir / "config.json"));
}

TEST(MakeModel, OverwriteProtection) {
  MakeModelOptions o = opts("overwrite");
  o.max_shard_bytes = 100'000;
  make_model(o);
  EXPECT_TRUE(fs::exists(o.out_dir / "model.safetensors.index.json"));
  o.max_shard_bytes = 0;
  const std::string msg = error_of([&] { make_model(o); });
  EXPECT_HAS(msg, o.out_dir.string());
  EXPECT_HAS(msg, "not empty");
  EXPECT_HAS(msg, "--force");
  std::ofstream(o.out_dir / "notes.txt") << "kept";
  o.force = true;
  make_model(o);
  int safetensors = 0;
  for (const auto& e : fs::directory_iterator(o.out_dir))
    safetensors += e.path().filename().string().find(".safetensors") != std::string::npos;
  EXPECT_EQ(safetensors, 1);  // old shards and index gone
  EXPECT_TRUE(fs::exists(o.out_dir / "notes.txt"));
  EXPECT_FALSE(Checkpoint::open(o.out_dir, CheckpointOptions{.progress = false}).sharded());
}

TEST(MakeModel, InvalidOptions) {
  auto bad = [](auto edit, std::string_view needle) {
    MakeModelOptions o = opts("invalid");
    edit(o);
    EXPECT_HAS(error_of([&] { make_model(o); }), needle);
  };
  bad([](auto& o) { o.arch = "llama"; }, "unknown architecture 'llama'");
  bad([](auto& o) { o.preset = "huge"; }, "unknown preset 'huge' (presets: tiny, mixtral-8x7b");
  bad([](auto& o) { o.preset = "olmoe-1b-7b"; }, "preset 'olmoe-1b-7b' has architecture olmoe, not mixtral");
  bad([](auto& o) { o.layers = 0; }, "--layers 0");
  bad([](auto& o) { o.dtype = DType::I32; }, "--dtype I32");
  bad([](auto& o) { o.generated_vocab = 100; }, "generated tokenizer size 100");
  bad([](auto& o) { o.tokenizer_dir = "/nonexistent/tok"; }, "no tokenizer.json");
  bad([](auto& o) { o.out_dir.clear(); }, "no output folder");
  MakeModelOptions o = opts("invalid-file");
  fs::remove_all(o.out_dir);
  std::ofstream(o.out_dir) << "x";
  EXPECT_HAS(error_of([&] { make_model(o); }), "is not a folder");
}

TEST(MakeModel, CopiedTokenizers) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/mixtral/tokenizer.json");
  MakeModelOptions o = opts("tok-mixtral");
  o.tokenizer_dir = test::shared_data_dir() / "tokenizers" / "mixtral";
  const MakeModelResult r = make_model(o);
  EXPECT_EQ(r.desc.vocab, 32000);
  EXPECT_EQ(r.desc.bos_token_id, 1);  // <s>
  EXPECT_EQ(r.desc.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(slurp(o.out_dir / "tokenizer.json"), slurp(o.tokenizer_dir / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(o.out_dir / "special_tokens_map.json"));
  EXPECT_FALSE(fs::exists(o.out_dir / "tokenizer.model.v1"));

  MakeModelOptions p = opts("tok-olmoe", "olmoe");
  p.tokenizer_dir = test::shared_data_dir() / "tokenizers" / "olmoe";
  const MakeModelResult s = plan_model(p);
  EXPECT_EQ(s.desc.vocab, 50304);  // 50,280 tokens rounded up to 64, as OLMoE pads it
  EXPECT_EQ(s.desc.eos_token_ids, std::vector<int>{50279});
  EXPECT_EQ(s.desc.pad_token_id, 1);

  MakeModelOptions q;
  q.preset = "mixtral-8x7b";
  q.dry_run = true;
  q.tokenizer_dir = test::shared_data_dir() / "tokenizers" / "olmoe";  // 50,280 > 32,000
  EXPECT_HAS(error_of([&] { plan_model(q); }), "more than the mixtral-8x7b preset's vocab_size 32000");
}

TEST(SyntheticInit, GeneratorProperties) {
  const uint64_t key = synth::tensor_key(1, "w", 1);
  EXPECT_NE(key, synth::tensor_key(2, "w", 1));
  EXPECT_NE(key, synth::tensor_key(1, "v", 1));
  double sum = 0, sq = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float u = synth::uniform_pm1(key, uint64_t(i));
    ASSERT_GE(u, -1.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    sq += double(u) * u;
    // A power-of-two half width makes the product exact: fused or not, the
    // host and the device round the same way.
    const float hw = 1.0f / 32.0f, c = 1.0f;
    ASSERT_EQ(std::fma(hw, u, c), c + hw * u);
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0 / 3.0, 0.01);  // variance of U(-1, 1)

  const MakeModelResult r = plan_model(opts("init", "mixtral"));
  const synth::SynthInit proj = synth_init(r.desc, TensorRole::QProj, 0, -1, 0);
  const synth::SynthInit norm = synth_init(r.desc, TensorRole::InputNorm, 0, -1, 0);
  const synth::SynthInit router = synth_init(r.desc, TensorRole::Router, 0, -1, 0);
  EXPECT_EQ(proj.center, 0.0f);
  EXPECT_NEAR(proj.half_width / std::sqrt(3.0f), 0.02f, 0.003f);  // std ~0.02
  EXPECT_EQ(norm.center, 1.0f);
  EXPECT_EQ(router.half_width, 0.25f);  // ~sqrt(3 / hidden), a power of two
  // Same values whatever the layout: keys come from the per-expert names.
  const std::string_view name = "model.layers.1.block_sparse_moe.experts.2.w1.weight";
  EXPECT_EQ(synth_init(r.desc, TensorRole::ExpertGate, 1, 2, 5).key, synth::tensor_key(5, name.data(), name.size()));
  const auto f = synth::fused_gate_up_index(2 * 128 * 64 + 128 * 64 + 65, 128, 64);
  EXPECT_EQ(f.expert, 1);
  EXPECT_EQ(f.part, 1);
  EXPECT_EQ(f.index, 65u);
  EXPECT_EQ(synth_weight(proj, 3, DType::F32), synth::synth_value(proj, 3));
}

}  // namespace
}  // namespace qllm
