// ModelDesc: config.json parsing for the three architectures, published sizes
// and parameter totals, tensor names, malformed configs.
#include "engine/common/error.h"
#include "engine/model/model_desc.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace qllm {
namespace {

using nlohmann::json;

std::filesystem::path fixture(const char* name) { return test::data_dir() / "model" / name; }

json read(const std::filesystem::path& p) {
  std::ifstream f(p);
  return json::parse(f);
}

// Runs `f`, expects a qllm::Error whose message contains every needle.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string_view> needles) {
  try {
    f();
    ADD_FAILURE() << "no qllm::Error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (auto n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

json tiny_mixtral() {
  return json{{"architectures", {"MixtralForCausalLM"}},
              {"model_type", "mixtral"},
              {"hidden_size", 64},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"vocab_size", 512},
              {"num_local_experts", 4},
              {"num_experts_per_tok", 2},
              {"intermediate_size", 128}};
}

// Published totals, cross-checked by instantiating the transformers model on
// the meta device from the same config.json and summing numel():
//   Mixtral-8x7B   46,702,792,704 (the figure Mistral publishes, "46.7B");
//                  active 12,879,925,248 ("12.9B active").
//   Qwen3-30B-A3B  30,532,122,624 ("30.5B total, 3.3B activated");
//                  embed 151936*2048 twice, 48 layers of q 4096x2048,
//                  k/v 512x2048, o 2048x4096, 128 experts of 3*768*2048,
//                  router 128x2048, per-head q/k norms [128]; active
//                  3,353,032,704.
//   OLMoE-1B-7B    6,919,161,856 ("6.9B total, 1.3B active"); 16 layers of
//                  4 2048x2048 projections, full-width q/k norms [2048],
//                  64 experts of 3*1024*2048; active 1,282,017,280.
TEST(ModelDesc, MixtralPublishedConfig) {
  const ModelDesc d = load_model_desc(fixture("mixtral-8x7b"));
  EXPECT_EQ(d.arch, Arch::Mixtral);
  EXPECT_EQ(d.hidden, 4096);
  EXPECT_EQ(d.layers, 32);
  EXPECT_EQ(d.heads, 32);
  EXPECT_EQ(d.kv_heads, 8);
  EXPECT_EQ(d.head_dim, 128);
  EXPECT_EQ(d.group_size(), 4);
  EXPECT_EQ(d.vocab, 32000);
  EXPECT_EQ(d.max_positions, 32768);
  EXPECT_EQ(d.num_experts, 8);
  EXPECT_EQ(d.top_k, 2);
  EXPECT_EQ(d.expert_ffn, 14336);
  EXPECT_EQ(d.dense_ffn, 0);
  EXPECT_EQ(d.num_moe_layers(), 32);
  EXPECT_TRUE(d.norm_topk_prob);
  EXPECT_EQ(d.qk_norm, QkNorm::None);
  EXPECT_FALSE(d.clip_qkv);
  EXPECT_FLOAT_EQ(d.rms_eps, 1e-5f);
  EXPECT_DOUBLE_EQ(d.rope_theta, 1e6);
  EXPECT_FALSE(d.sliding_window);
  EXPECT_FALSE(d.tie_word_embeddings);
  EXPECT_EQ(d.torch_dtype, DType::BF16);
  EXPECT_EQ(d.bos_token_id, 1);
  EXPECT_EQ(d.eos_token_ids, std::vector<int>{2});
  EXPECT_TRUE(d.generation.present);
  EXPECT_EQ(d.stop_token_ids(), std::vector<int>{2});

  EXPECT_EQ(d.param_count(), 46'702'792'704);
  EXPECT_EQ(d.active_param_count(), 12'879'925'248);
  const ParamCounts c = d.param_counts();
  EXPECT_EQ(c.embed, 32000ll * 4096);
  EXPECT_EQ(c.lm_head, 32000ll * 4096);
  EXPECT_EQ(c.experts, 32ll * 8 * 3 * 4096 * 14336);
  EXPECT_EQ(c.router, 32ll * 8 * 4096);
  EXPECT_EQ(d.param_bytes(DType::BF16).total(), 2 * d.param_count());

  // Decode traffic: everything active except the embedding table, plus one row.
  const DecodeTraffic t = d.decode_bytes_per_token(DType::BF16);
  EXPECT_EQ(t.total(), 2 * (d.active_param_count() - c.embed + 4096));
  EXPECT_EQ(t.experts, 2ll * 32 * 2 * 3 * 4096 * 14336);
  EXPECT_EQ(d.kv_bytes_per_token(DType::BF16), 2ll * 32 * 1024 * 2);

  int64_t spec_total = 0;
  for (const auto& s : d.tensor_specs()) spec_total += s.numel();
  EXPECT_EQ(spec_total, d.param_count());
  int64_t fused_total = 0;
  for (const auto& s : d.tensor_specs(ExpertLayout::Fused)) fused_total += s.numel();
  EXPECT_EQ(fused_total, d.param_count());
}

TEST(ModelDesc, Qwen3PublishedConfig) {
  const ModelDesc d = load_model_desc(fixture("qwen3-30b-a3b") / "config.json");
  EXPECT_EQ(d.arch, Arch::Qwen3Moe);
  EXPECT_EQ(d.hidden, 2048);
  EXPECT_EQ(d.layers, 48);
  EXPECT_EQ(d.heads, 32);
  EXPECT_EQ(d.kv_heads, 4);
  EXPECT_EQ(d.head_dim, 128);
  EXPECT_EQ(d.q_dim(), 4096);  // differs from hidden: q_proj is [4096, 2048]
  EXPECT_EQ(d.num_experts, 128);
  EXPECT_EQ(d.top_k, 8);
  EXPECT_EQ(d.expert_ffn, 768);
  EXPECT_EQ(d.dense_ffn, 0);  // no dense layer: intermediate_size unused
  EXPECT_EQ(d.num_moe_layers(), 48);
  EXPECT_TRUE(d.norm_topk_prob);
  EXPECT_EQ(d.qk_norm, QkNorm::PerHead);
  EXPECT_FLOAT_EQ(d.rms_eps, 1e-6f);
  EXPECT_DOUBLE_EQ(d.rope_theta, 1e6);
  EXPECT_FALSE(d.sliding_window);  // use_sliding_window is false
  EXPECT_EQ(d.eos_token_ids, std::vector<int>{151645});
  EXPECT_EQ(d.stop_token_ids(), (std::vector<int>{151645, 151643}));
  EXPECT_EQ(d.generation.temperature, 0.6f);
  EXPECT_EQ(d.generation.top_k, 20);
  EXPECT_EQ(d.generation.top_p, 0.95f);
  EXPECT_EQ(d.generation.do_sample, true);
  EXPECT_EQ(d.generation.pad_token_id, 151643);

  EXPECT_EQ(d.param_count(), 30'532'122'624);
  EXPECT_EQ(d.active_param_count(), 3'353'032'704);
}

TEST(ModelDesc, OlmoePublishedConfig) {
  const ModelDesc d = load_model_desc(fixture("olmoe-1b-7b"));
  EXPECT_EQ(d.arch, Arch::Olmoe);
  EXPECT_EQ(d.hidden, 2048);
  EXPECT_EQ(d.layers, 16);
  EXPECT_EQ(d.heads, 16);
  EXPECT_EQ(d.kv_heads, 16);
  EXPECT_EQ(d.head_dim, 128);
  EXPECT_EQ(d.vocab, 50304);
  EXPECT_EQ(d.num_experts, 64);
  EXPECT_EQ(d.top_k, 8);
  EXPECT_EQ(d.expert_ffn, 1024);
  EXPECT_FALSE(d.norm_topk_prob);
  EXPECT_EQ(d.qk_norm, QkNorm::FullWidth);
  EXPECT_FALSE(d.clip_qkv);
  EXPECT_DOUBLE_EQ(d.rope_theta, 10000.0);
  EXPECT_FALSE(d.bos_token_id);
  EXPECT_EQ(d.pad_token_id, 1);
  EXPECT_EQ(d.stop_token_ids(), std::vector<int>{50279});

  EXPECT_EQ(d.param_count(), 6'919'161'856);
  EXPECT_EQ(d.active_param_count(), 1'282'017'280);
  for (const auto& s : d.tensor_specs()) {
    if (s.role == TensorRole::QNorm) {
      EXPECT_EQ(s.shape, std::vector<int64_t>{2048});
    }
  }
}

TEST(ModelDesc, TensorNames) {
  const ModelDesc m = parse_model_desc(tiny_mixtral(), "t");
  EXPECT_EQ(m.names.embed(), "model.embed_tokens.weight");
  EXPECT_EQ(m.names.lm_head(), "lm_head.weight");
  EXPECT_EQ(m.names.router(1), "model.layers.1.block_sparse_moe.gate.weight");
  EXPECT_EQ(m.names.expert_gate(1, 3), "model.layers.1.block_sparse_moe.experts.3.w1.weight");
  EXPECT_EQ(m.names.expert_up(1, 3), "model.layers.1.block_sparse_moe.experts.3.w3.weight");
  EXPECT_EQ(m.names.expert_down(0, 2), "model.layers.0.block_sparse_moe.experts.2.w2.weight");
  EXPECT_EQ(m.names.fused_gate_up(1), "model.layers.1.mlp.experts.gate_up_proj");
  EXPECT_EQ(m.names.name(TensorRole::Router, 1, -1, ExpertLayout::Fused), "model.layers.1.mlp.gate.weight");
  EXPECT_EQ(m.names.accepted(TensorRole::Router, 0).size(), 2u);

  json q = tiny_mixtral();
  q["architectures"] = {"Qwen3MoeForCausalLM"};
  q["model_type"] = "qwen3_moe";
  q["num_experts"] = 4;
  q.erase("num_local_experts");
  q["moe_intermediate_size"] = 32;
  const ModelDesc d = parse_model_desc(q, "t");
  EXPECT_EQ(d.names.expert_gate(0, 1), "model.layers.0.mlp.experts.1.gate_proj.weight");
  EXPECT_EQ(d.names.expert_down(0, 1), "model.layers.0.mlp.experts.1.down_proj.weight");
  EXPECT_EQ(d.names.q_norm(0), "model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(d.names.dense_up(2), "model.layers.2.mlp.up_proj.weight");
  EXPECT_EQ(d.names.router(0), "model.layers.0.mlp.gate.weight");
  EXPECT_EQ(d.expert_ffn, 32);
}

TEST(ModelDesc, Qwen3DenseLayers) {
  json q = read(fixture("qwen3-30b-a3b") / "config.json");
  q["num_hidden_layers"] = 6;
  q["mlp_only_layers"] = {0, 5};
  q["decoder_sparse_step"] = 2;  // layers 1, 3, 5 sparse; 5 is listed as dense
  const ModelDesc d = parse_model_desc(q, "q");
  EXPECT_EQ(d.is_moe, (std::vector<bool>{false, true, false, true, false, false}));
  EXPECT_EQ(d.dense_ffn, 6144);
  const ParamCounts c = d.param_counts();
  EXPECT_EQ(c.dense_mlp, 4ll * 3 * 2048 * 6144);
  EXPECT_EQ(c.router, 2ll * 128 * 2048);
  int dense_specs = 0;
  for (const auto& s : d.tensor_specs()) dense_specs += s.role == TensorRole::DenseGate;
  EXPECT_EQ(dense_specs, 4);

  q.erase("intermediate_size");
  expect_error([&] { parse_model_desc(q, "q.json"); }, {"q.json", "intermediate_size", "missing"});
  q["mlp_only_layers"] = {7};
  expect_error([&] { parse_model_desc(q, "q.json"); }, {"mlp_only_layers", "7", "not a layer"});
}

TEST(ModelDesc, NewerFileFields) {
  json j = tiny_mixtral();
  j["rope_parameters"] = {{"rope_theta", 5e5}, {"rope_type", "default"}};
  j["dtype"] = "float32";
  j["eos_token_id"] = {2, 7};
  j["head_dim"] = 32;  // Mistral-Nemo style: heads * head_dim != hidden
  const ModelDesc d = parse_model_desc(j, "t");
  EXPECT_DOUBLE_EQ(d.rope_theta, 5e5);
  EXPECT_EQ(d.torch_dtype, DType::F32);
  EXPECT_EQ(d.eos_token_ids, (std::vector<int>{2, 7}));
  EXPECT_EQ(d.q_dim(), 128);

  j.erase("architectures");  // falls back to model_type
  EXPECT_EQ(parse_model_desc(j, "t").arch, Arch::Mixtral);
  j["sliding_window"] = 4096;
  EXPECT_EQ(parse_model_desc(j, "t").sliding_window, 4096);
  j["num_experts"] = 4;  // transformers' alias, consistent
  EXPECT_EQ(parse_model_desc(j, "t").num_experts, 4);
}

TEST(ModelDesc, OlmoeClipAndHeadDim) {
  json j = read(fixture("olmoe-1b-7b") / "config.json");
  j["clip_qkv"] = 8.0;
  EXPECT_EQ(parse_model_desc(j, "o").clip_qkv, 8.0f);
  j["head_dim"] = 64;  // q_norm is sized hidden: heads * head_dim must be hidden
  expect_error([&] { parse_model_desc(j, "o.json"); }, {"o.json", "head_dim", "2048"});
}

TEST(ModelDesc, MalformedConfigs) {
  auto bad = [](auto edit, std::initializer_list<std::string_view> needles) {
    json j = tiny_mixtral();
    edit(j);
    expect_error([&] { parse_model_desc(j, "dir/config.json"); }, needles);
  };
  bad([](json& j) { j.erase("hidden_size"); }, {"dir/config.json", "'hidden_size'", "missing"});
  bad([](json& j) { j["hidden_size"] = "64"; }, {"dir/config.json", "'hidden_size'", "expected an integer", "string"});
  bad([](json& j) { j["hidden_size"] = 0; }, {"'hidden_size'", "[1,"});
  bad([](json& j) { j["num_experts_per_tok"] = 5; }, {"'num_experts_per_tok'", "5", "exceeds", "4"});
  bad([](json& j) { j.erase("num_local_experts"); }, {"'num_local_experts'", "missing"});
  bad([](json& j) { j["num_experts"] = 8; }, {"'num_local_experts'", "disagrees", "num_experts"});
  bad([](json& j) { j["architectures"] = {"LlamaForCausalLM"}; },
      {"'architectures'", "LlamaForCausalLM", "MixtralForCausalLM", "Qwen3MoeForCausalLM", "OlmoeForCausalLM"});
  bad([](json& j) { j.erase("architectures"); j["model_type"] = "llama"; }, {"'model_type'", "llama", "olmoe"});
  bad([](json& j) { j.erase("architectures"); j.erase("model_type"); }, {"neither", "supported"});
  bad([](json& j) { j["model_type"] = "olmoe"; }, {"'model_type'", "does not match"});
  bad([](json& j) { j["architectures"] = "MixtralForCausalLM"; }, {"'architectures'", "list"});
  bad([](json& j) { j["num_key_value_heads"] = 3; }, {"'num_key_value_heads'", "does not divide"});
  bad([](json& j) { j["num_attention_heads"] = 5; j["num_key_value_heads"] = 5; },
      {"'num_attention_heads'", "does not divide hidden_size"});
  bad([](json& j) { j["head_dim"] = 15; }, {"'head_dim'", "even"});
  bad([](json& j) { j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}}; }, {"'rope_scaling'", "yarn", "not supported"});
  bad([](json& j) { j["rope_parameters"] = {{"rope_type", "llama3"}}; }, {"'rope_parameters'", "llama3"});
  bad([](json& j) { j["hidden_act"] = "gelu"; }, {"'hidden_act'", "gelu"});
  bad([](json& j) { j["torch_dtype"] = "int8"; }, {"'torch_dtype'", "int8"});
  bad([](json& j) { j["eos_token_id"] = {2, "x"}; }, {"'eos_token_id[1]'", "integer"});
  bad([](json& j) { j["eos_token_id"] = 600; }, {"'eos_token_id'", "600", "vocab"});
  bad([](json& j) { j["tie_word_embeddings"] = 1; }, {"'tie_word_embeddings'", "true or false"});
  bad([](json& j) { j["rms_norm_eps"] = -1.0; }, {"'rms_norm_eps'"});
  bad([](json& j) { j["num_hidden_layers"] = 4096; j["num_local_experts"] = 65536; j["intermediate_size"] = 1 << 20; },
      {"dir/config.json", "not plausible"});
  expect_error([] { parse_model_desc(json::array(), "c.json"); }, {"c.json", "object"});
}

// Every key of every published config set to every kind of wrong value:
// parse_model_desc either accepts it or throws qllm::Error, nothing else.
TEST(ModelDesc, MutatedConfigsThrowOnlyQllmErrors) {
  const std::vector<json> values{nullptr, "x", -1, 0, 1, 3, 1e30, -1e-30, 2.5, true, json::array(),
                                 json::array({1, "a"}), json::object(), json::object({{"rope_type", 7}}),
                                 18446744073709551615ull, -9223372036854775807ll};
  int accepted = 0, rejected = 0;
  for (const char* name : {"mixtral-8x7b", "qwen3-30b-a3b", "olmoe-1b-7b"}) {
    const json base = read(fixture(name) / "config.json");
    for (const auto& [key, unused] : base.items()) {
      for (const json& v : values) {
        json j = base;
        j[key] = v;
        try {
          parse_model_desc(j, "m");
          ++accepted;
        } catch (const Error&) {
          ++rejected;
        }
      }
      json j = base;
      j.erase(key);
      try {
        parse_model_desc(j, "m");
        ++accepted;
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

TEST(ModelDesc, LoadErrors) {
  const auto dir = test::temp_dir("model_desc_load");
  expect_error([&] { load_model_desc(dir); }, {"config.json", "not found"});
  { std::ofstream(dir / "config.json") << "{ \"hidden_size\": 64, "; }
  expect_error([&] { load_model_desc(dir); }, {"config.json", "not valid JSON"});
  { std::ofstream(dir / "config.json") << tiny_mixtral().dump(); }
  EXPECT_FALSE(load_model_desc(dir).generation.present);
  { std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [2, 9999]})"; }
  expect_error([&] { load_model_desc(dir); }, {"generation_config.json", "9999", "vocab"});
  { std::ofstream(dir / "generation_config.json") << R"({"temperature": "hot"})"; }
  expect_error([&] { load_model_desc(dir); }, {"generation_config.json", "'temperature'"});
}

}  // namespace
}  // namespace qllm
