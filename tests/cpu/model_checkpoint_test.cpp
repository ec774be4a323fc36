// Checkpoint: synthetic folders opened back, views against the generator,
// fused == per-expert, sharded == single file, and malformed folders.
#include "engine/common/error.h"
#include "engine/model/checkpoint.h"
#include "engine/model/make_model.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include "tests/test_errors.h"
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <functional>

namespace qllm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const CheckpointOptions kQuiet{.progress = false};

using qllm::test::error_of;

fs::path make(const std::string& name, const std::string& arch, bool fused = false,
              DType dtype = DType::BF16, uint64_t shard = 0, uint64_t seed = 7) {
  MakeModelOptions o;
  o.out_dir = test::temp_dir("ckpt-" + name);
  o.arch = arch;
  o.fused_experts = fused;
  o.dtype = dtype;
  o.max_shard_bytes = shard;
  o.seed = seed;
  o.progress = false;
  o.force = true;
  make_model(o);
  return o.out_dir;
}

// Every element of every weight equals the generator's value.
void expect_generator_values(const Checkpoint& ck, DType dtype, uint64_t seed) {
  const ModelDesc& d = ck.desc();
  for (const TensorSpec& s : d.tensor_specs()) {
    const MatrixView v = ck.weight(s.role, s.layer, s.expert);
    ASSERT_EQ(v.dtype, dtype) << s.name;
    ASSERT_EQ(v.numel(), s.numel()) << s.name;
    const synth::SynthInit init = synth_init(d, s.role, s.layer, s.expert, seed);
    std::vector<float> row(static_cast<size_t>(v.cols));
    for (int64_t r = 0; r < v.rows; ++r) {
      v.row_to_f32(r, row.data());
      for (int64_t c = 0; c < v.cols; ++c)
        ASSERT_EQ(row[size_t(c)], synth_weight(init, uint64_t(r * v.cols + c), dtype))
            << s.name << " [" << r << "," << c << "]";
    }
  }
}

struct Case {
  const char* arch;
  bool fused;
  DType dtype;
};

class RoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(RoundTrip, ViewsMatchGenerator) {
  const Case c = GetParam();
  const auto dir = make(std::string(c.arch) + (c.fused ? "-fused" : "") + std::string(dtype_name(c.dtype)),
                        c.arch, c.fused, c.dtype);
  const Checkpoint ck = Checkpoint::open(dir, kQuiet);
  EXPECT_EQ(ck.expert_layout(), c.fused ? ExpertLayout::Fused : ExpertLayout::PerExpert);
  EXPECT_FALSE(ck.sharded());
  EXPECT_TRUE(ck.warnings().empty());
  EXPECT_EQ(ck.total_bytes(), uint64_t(ck.desc().param_count()) * dtype_size(c.dtype));
  expect_generator_values(ck, c.dtype, 7);
}

INSTANTIATE_TEST_SUITE_P(
    Archs, RoundTrip,
    ::testing::Values(Case{"mixtral", false, DType::BF16}, Case{"mixtral", true, DType::BF16},
                      Case{"qwen3_moe", false, DType::BF16}, Case{"qwen3_moe", true, DType::F32},
                      Case{"olmoe", false, DType::F16}, Case{"olmoe", true, DType::BF16},
                      Case{"mixtral", true, DType::F32}));

TEST(Checkpoint, FusedEqualsPerExpert) {
  for (const char* arch : {"mixtral", "qwen3_moe", "olmoe"}) {
    const Checkpoint a = Checkpoint::open(make(std::string("pe-") + arch, arch, false), kQuiet);
    const Checkpoint b = Checkpoint::open(make(std::string("fu-") + arch, arch, true), kQuiet);
    const ModelDesc& d = a.desc();
    for (int l = 0; l < d.layers; ++l) {
      if (!d.is_moe_layer(l)) continue;
      EXPECT_EQ(std::memcmp(a.weight(TensorRole::Router, l).data, b.weight(TensorRole::Router, l).data,
                            size_t(d.num_experts) * size_t(d.hidden) * 2), 0);
      for (int e = 0; e < d.num_experts; ++e) {
        const ExpertView x = a.expert(l, e), y = b.expert(l, e);
        for (auto [p, q] : {std::pair{x.gate, y.gate}, std::pair{x.up, y.up}, std::pair{x.down, y.down}}) {
          ASSERT_EQ(p.rows, q.rows);
          ASSERT_EQ(p.cols, q.cols);
          EXPECT_TRUE(q.contiguous());
          for (int64_t r = 0; r < p.rows; ++r)
            ASSERT_EQ(std::memcmp(p.row(r), q.row(r), p.row_bytes()), 0) << arch << " layer " << l << " expert " << e;
        }
        EXPECT_EQ(x.gate.rows, d.expert_ffn);
        EXPECT_EQ(x.down.rows, d.hidden);
      }
    }
  }
}

TEST(Checkpoint, ShardedEqualsSingle) {
  const Checkpoint one = Checkpoint::open(make("single", "qwen3_moe", true), kQuiet);
  const Checkpoint many = Checkpoint::open(make("sharded", "qwen3_moe", true, DType::BF16, 100'000), kQuiet);
  EXPECT_TRUE(many.sharded());
  EXPECT_GT(many.num_shards(), 3u);
  EXPECT_TRUE(many.warnings().empty()) << many.warnings().front();
  const auto ta = one.tensor_table(), tb = many.tensor_table();
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& t : ta) {
    const TensorView x = one.tensor(t.name), y = many.tensor(t.name);
    ASSERT_EQ(x.nbytes, y.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << t.name;
  }
  int roles = 0;
  for (const auto& t : tb) {
    roles += t.role.has_value();
    EXPECT_EQ(t.shard.rfind("model-0000", 0), 0u) << t.shard;
  }
  EXPECT_EQ(roles, int(tb.size()));
}

TEST(Checkpoint, AccessorErrors) {
  const Checkpoint m = Checkpoint::open(make("acc-mixtral", "mixtral"), kQuiet);
  EXPECT_HAS(error_of([&] { m.weight(TensorRole::QNorm, 0); }), "q_norm");
  EXPECT_HAS(error_of([&] { m.weight(TensorRole::QProj, 9); }), "layer 9 out of range");
  EXPECT_HAS(error_of([&] { m.expert(0, 4); }), "expert 4 out of range");
  EXPECT_HAS(error_of([&] { m.weight(TensorRole::FusedGateUp, 0); }), "fused_gate_up");
  EXPECT_HAS(error_of([&] { m.tensor("nope"); }), "'nope'");
  const Checkpoint q = Checkpoint::open(make("acc-qwen", "qwen3_moe"), kQuiet);
  ASSERT_FALSE(q.desc().is_moe_layer(1));
  EXPECT_HAS(error_of([&] { q.expert(1, 0); }), "layer 1");
  EXPECT_EQ(q.weight(TensorRole::DenseGate, 1).rows, q.desc().dense_ffn);
  EXPECT_EQ(q.weight(TensorRole::QNorm, 0).cols, q.desc().head_dim);
  EXPECT_EQ(q.weight(TensorRole::QProj, 0).rows, q.desc().q_dim());
}

// --- malformed folders ------------------------------------------------------

struct Tensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<Tensor> read_all(const fs::path& file) {
  const SafetensorsFile f(file);
  std::vector<Tensor> out;
  for (const auto& e : f.header().tensors) {
    const TensorView v = f.tensor(e.name);
    out.push_back({e.name, e.dtype, e.shape, std::vector<uint8_t>(v.data, v.data + v.nbytes)});
  }
  return out;
}

void write_all(const fs::path& file, const std::vector<Tensor>& ts) {
  SafetensorsWriter w;
  for (const auto& t : ts) w.add_bytes(t.name, t.dtype, t.shape, t.bytes);
  w.write(file);
}

void rewrite(const fs::path& file, const std::function<void(std::vector<Tensor>&)>& edit) {
  auto ts = read_all(file);
  edit(ts);
  write_all(file, ts);
}

Tensor* find(std::vector<Tensor>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return &t;
  return nullptr;
}

void edit_json(const fs::path& p, const std::function<void(json&)>& edit) {
  json j;
  {
    std::ifstream f(p);
    j = json::parse(f);
  }
  edit(j);
  std::ofstream(p) << j.dump(2);
}

TEST(CheckpointMalformed, MissingTensor) {
  const auto dir = make("bad-missing", "mixtral");
  const std::string name = "model.layers.1.block_sparse_moe.experts.2.w3.weight";
  rewrite(dir / "model.safetensors", [&](auto& ts) { std::erase_if(ts, [&](auto& t) { return t.name == name; }); });
  const std::string msg = error_of([&] { Checkpoint::open(dir, kQuiet); });
  EXPECT_HAS(msg, dir.string());
  EXPECT_HAS(msg, "missing tensor '" + name + "'");
  EXPECT_HAS(msg, "expert_up, layer 1, expert 2");
  EXPECT_HAS(msg, "[128, 64]");
}

TEST(CheckpointMalformed, WrongShape) {
  const auto dir = make("bad-shape", "olmoe");
  const std::string name = "model.layers.0.self_attn.k_norm.weight";
  rewrite(dir / "model.safetensors", [&](auto& ts) {
    Tensor* t = find(ts, name);
    t->shape = {16};  // per-head size; OLMoE normalises all of k: [kv_heads*head_dim] = [32]
    t->bytes.resize(32);
  });
  const std::string msg = error_of([&] { Checkpoint::open(dir, kQuiet); });
  EXPECT_HAS(msg, (dir / "model.safetensors").string());
  EXPECT_HAS(msg, name);
  EXPECT_HAS(msg, "shape [16]");
  EXPECT_HAS(msg, "implies [32]");
}

TEST(CheckpointMalformed, WrongDtype) {
  const auto dir = make("bad-dtype", "qwen3_moe");
  const std::string name = "model.layers.0.mlp.gate.weight";
  rewrite(dir / "model.safetensors", [&](auto& ts) {
    Tensor* t = find(ts, name);
    t->dtype = DType::I32;
    t->bytes.resize(t->bytes.size() * 2);
  });
  const std::string msg = error_of([&] { Checkpoint::open(dir, kQuiet); });
  EXPECT_HAS(msg, (dir / "model.safetensors").string());
  EXPECT_HAS(msg, name);
  EXPECT_HAS(msg, "dtype I32");
  EXPECT_HAS(msg, "BF16, F16 or F32");
}

TEST(CheckpointMalformed, ExtraTensorIsAWarning) {
  const auto dir = make("extra", "mixtral");
  rewrite(dir / "model.safetensors", [](auto& ts) {
    ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::F32, {8}, std::vector<uint8_t>(32)});
  });
  const Checkpoint ck = Checkpoint::open(dir, kQuiet);
  ASSERT_EQ(ck.warnings().size(), 1u);
  EXPECT_HAS(ck.warnings()[0], "rotary_emb.inv_freq");
  EXPECT_TRUE(ck.contains("model.layers.0.self_attn.rotary_emb.inv_freq"));
  bool listed = false;
  for (const auto& t : ck.tensor_table())
    if (t.name == "model.layers.0.self_attn.rotary_emb.inv_freq") listed = !t.role.has_value();
  EXPECT_TRUE(listed);
}

TEST(CheckpointMalformed, TiedEmbeddings) {
  const auto dir = make("tied", "olmoe");
  rewrite(dir / "model.safetensors", [](auto& ts) { std::erase_if(ts, [](auto& t) { return t.name == "lm_head.weight"; }); });
  EXPECT_HAS(error_of([&] { Checkpoint::open(dir, kQuiet); }), "missing tensor 'lm_head.weight'");
  edit_json(dir / "config.json", [](json& j) { j["tie_word_embeddings"] = true; });
  const Checkpoint ck = Checkpoint::open(dir, kQuiet);
  EXPECT_TRUE(ck.lm_head_tied());
  EXPECT_EQ(ck.lm_head().data, ck.embed().data);
  EXPECT_EQ(ck.lm_head().rows, ck.desc().vocab);
}

TEST(CheckpointMalformed, RouterAliasAndMixedLayouts) {
  // Mixtral fused with the router left under block_sparse_moe.: accepted.
  const auto dir = make("alias", "mixtral", true);
  rewrite(dir / "model.safetensors", [](auto& ts) {
    find(ts, "model.layers.0.mlp.gate.weight")->name = "model.layers.0.block_sparse_moe.gate.weight";
  });
  const Checkpoint ck = Checkpoint::open(dir, kQuiet);
  EXPECT_EQ(ck.weight(TensorRole::Router, 0).tensor, "model.layers.0.block_sparse_moe.gate.weight");
  // Layer 1 per expert while layer 0 is fused: rejected with a hint.
  const auto per = read_all(make("alias-per", "mixtral") / "model.safetensors");
  rewrite(dir / "model.safetensors", [&](auto& ts) {
    std::erase_if(ts, [](auto& t) { return t.name.find("layers.1.mlp.experts") != std::string::npos; });
    for (const auto& t : per)
      if (t.name.find("layers.1.block_sparse_moe.experts") != std::string::npos) ts.push_back(t);
  });
  EXPECT_HAS(error_of([&] { Checkpoint::open(dir, kQuiet); }), "mixed expert layouts");
}

class ShardedMalformed : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = make("bad-index-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()),
               "mixtral", false, DType::BF16, 150'000);
    index = dir / "model.safetensors.index.json";
  }
  std::string open_error() { return error_of([&] { Checkpoint::open(dir, kQuiet); }); }
  fs::path dir, index;
};

TEST_F(ShardedMalformed, NotJson) {
  std::ofstream(index) << "{\"weight_map\": {";
  const std::string msg = open_error();
  EXPECT_HAS(msg, index.string());
  EXPECT_HAS(msg, "not valid JSON");
}

TEST_F(ShardedMalformed, BadShape) {
  edit_json(index, [](json& j) { j.erase("weight_map"); });
  EXPECT_HAS(open_error(), "'weight_map': required object is missing");
  edit_json(index, [](json& j) { j["weight_map"] = json::array(); });
  EXPECT_HAS(open_error(), "'weight_map': expected an object");
  edit_json(index, [](json& j) { j["weight_map"] = {{"model.norm.weight", 3}}; });
  EXPECT_HAS(open_error(), "expected a shard file name");
  edit_json(index, [](json& j) { j["weight_map"] = {{"model.norm.weight", "../model.safetensors"}}; });
  EXPECT_HAS(open_error(), "plain file name");
  edit_json(index, [](json& j) { j = json::array(); });
  EXPECT_HAS(open_error(), "JSON object");
}

TEST_F(ShardedMalformed, ShardMissing) {
  fs::remove(dir / "model-00002-of-00004.safetensors");
  const std::string msg = open_error();
  EXPECT_HAS(msg, index.string());
  EXPECT_HAS(msg, "model-00002-of-00004.safetensors");
  EXPECT_HAS(msg, "does not exist");
}

TEST_F(ShardedMalformed, TensorNotInItsShard) {
  edit_json(index, [](json& j) { j["weight_map"]["model.norm.weight"] = "model-00001-of-00004.safetensors"; });
  const std::string msg = open_error();
  EXPECT_HAS(msg, "model.norm.weight");
  EXPECT_HAS(msg, "model-00001-of-00004.safetensors");
}

TEST_F(ShardedMalformed, IndexNamesAbsentTensor) {
  edit_json(index, [](json& j) { j["weight_map"]["model.extra.weight"] = "model-00003-of-00004.safetensors"; });
  const std::string msg = open_error();
  EXPECT_HAS(msg, "'model.extra.weight'");
  EXPECT_HAS(msg, "holds no such tensor");
}

TEST_F(ShardedMalformed, TensorInTwoShards) {
  const auto first = read_all(dir / "model-00001-of-00004.safetensors");
  rewrite(dir / "model-00004-of-00004.safetensors", [&](auto& ts) { ts.push_back(first[0]); });
  const std::string msg = open_error();
  EXPECT_HAS(msg, "'" + first[0].name + "' is in two shards");
}

TEST_F(ShardedMalformed, TruncatedShard) {
  const auto shard = dir / "model-00003-of-00004.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 100);
  const std::string msg = open_error();
  EXPECT_HAS(msg, "model-00003-of-00004.safetensors");
  EXPECT_HAS(msg, index.string());
}

TEST_F(ShardedMalformed, Warnings) {
  edit_json(index, [](json& j) {
    j["metadata"]["total_size"] = 5;
    j["weight_map"].erase("model.norm.weight");
  });
  const Checkpoint ck = Checkpoint::open(dir, kQuiet);
  ASSERT_EQ(ck.warnings().size(), 2u);
  EXPECT_HAS(ck.warnings()[0], "'model.norm.weight'");
  EXPECT_HAS(ck.warnings()[0], "not listed");
  EXPECT_HAS(ck.warnings()[1], "total_size");
}

TEST(CheckpointMalformed, NoWeights) {
  const auto dir = make("noweights", "mixtral");
  fs::remove(dir / "model.safetensors");
  const std::string msg = error_of([&] { Checkpoint::open(dir, kQuiet); });
  EXPECT_HAS(msg, "no weights");
  EXPECT_HAS(msg, "model.safetensors.index.json");
}

TEST(CheckpointMalformed, TruncatedSingleFile) {
  const auto dir = make("truncated", "olmoe");
  fs::resize_file(dir / "model.safetensors", 4096);
  EXPECT_HAS(error_of([&] { Checkpoint::open(dir, kQuiet); }), (dir / "model.safetensors").string());
}

}  // namespace
}  // namespace qllm
