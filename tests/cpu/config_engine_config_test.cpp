// Engine configuration: defaults, strict parsing, overrides, invariants, and
// the shipped YAML files under configs/.
#include "engine/common/error.h"
#include "engine/config/engine_config.h"
#include "tests/test_errors.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using qllm::EngineConfig;
using qllm::parse_engine_config;

namespace {

using qllm::test::error_of;

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(EngineConfig, EmptyFileKeepsDefaults) {
  const auto c = parse_engine_config("", "empty.yaml");
  const EngineConfig d;
  EXPECT_EQ(c.scheduler_policy, d.scheduler_policy);
  EXPECT_EQ(c.model_path, d.model_path);
  EXPECT_EQ(c.kv_block_size, d.kv_block_size);
}

TEST(EngineConfig, ParsesEveryType) {
  const auto c = parse_engine_config(R"(
model:
  path: /models/mixtral
  synthetic_weights: true
scheduler:
  policy: fcfs-iteration
  prefill_chunk: 64
  be_max_wait_s: 2.5
sampling:
  temperature: 0.7
)", "t.yaml");
  EXPECT_EQ(c.model_path, "/models/mixtral");
  EXPECT_TRUE(c.model_synthetic_weights);
  EXPECT_EQ(c.scheduler_policy, "fcfs-iteration");
  EXPECT_EQ(c.scheduler_prefill_chunk, 64);
  EXPECT_DOUBLE_EQ(c.scheduler_be_max_wait_s, 2.5);
  EXPECT_DOUBLE_EQ(c.sampling_temperature, 0.7);
}

TEST(EngineConfig, UnknownKeyNamesFileKeyAndSuggestion) {
  const auto msg = error_of([] { parse_engine_config("scheduler:\n  polcy: x\n", "my.yaml"); });
  EXPECT_NE(msg.find("my.yaml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scheduler.polcy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'scheduler.policy'"), std::string::npos) << msg;
}

TEST(EngineConfig, UnknownSectionIsAnError) {
  const auto msg = error_of([] { parse_engine_config("nonsense:\n  a: 1\n", "f.yaml"); });
  EXPECT_NE(msg.find("nonsense.a"), std::string::npos) << msg;
}

TEST(EngineConfig, WrongTypesNameTheKey) {
  auto msg = error_of([] { parse_engine_config("kv_cache:\n  num_blocks: many\n", "f.yaml"); });
  EXPECT_NE(msg.find("kv_cache.num_blocks"), std::string::npos) << msg;
  EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("model:\n  synthetic_weights: yes please\n", "f.yaml"); });
  EXPECT_NE(msg.find("true or false"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("sampling:\n  top_p: [1, 2]\n", "f.yaml"); });
  EXPECT_NE(msg.find("sampling.top_p"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("scheduler:\n  prefill_chunk: 1.5\n", "f.yaml"); });
  EXPECT_NE(msg.find("scheduler.prefill_chunk"), std::string::npos) << msg;
}

TEST(EngineConfig, InvalidValuesAreRefused) {
  auto msg = error_of([] { parse_engine_config("scheduler:\n  policy: lifo\n", "f.yaml"); });
  EXPECT_NE(msg.find("priority-expert"), std::string::npos) << msg;  // lists the choices
  msg = error_of([] { parse_engine_config("server:\n  port: 70000\n", "f.yaml"); });
  EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("kv_cache:\n  block_size: 12\n", "f.yaml"); });
  EXPECT_NE(msg.find("kv_cache.block_size"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("sampling:\n  temperature: -1\n", "f.yaml"); });
  EXPECT_NE(msg.find("sampling.temperature"), std::string::npos) << msg;
}

TEST(EngineConfig, DuplicateAndMalformedYaml) {
  auto msg = error_of([] { parse_engine_config("scheduler:\n  policy: [\n", "bad.yaml"); });
  EXPECT_NE(msg.find("bad.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("- a\n- b\n", "list.yaml"); });
  EXPECT_NE(msg.find("top level"), std::string::npos) << msg;
  msg = error_of([] { parse_engine_config("model:\n  path: a\nmodel:\n  path: b\n", "dup.yaml"); });
  EXPECT_NE(msg.find("dup.yaml"), std::string::npos) << msg;
}

TEST(EngineConfig, InvariantsAcrossKeys) {
  const auto msg = error_of([] {
    parse_engine_config("scheduler:\n  max_tokens_per_step: 64\n  prefill_chunk: 128\n", "f.yaml");
  });
  EXPECT_NE(msg.find("scheduler.prefill_chunk"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scheduler.max_tokens_per_step"), std::string::npos) << msg;
}

TEST(EngineConfig, Overrides) {
  EngineConfig c;
  qllm::apply_override(c, "scheduler.policy=priority-layer");
  qllm::apply_override(c, "server.port=9001");
  EXPECT_EQ(c.scheduler_policy, "priority-layer");
  EXPECT_EQ(c.server_port, 9001);
  auto msg = error_of([&] { qllm::apply_override(c, "scheduler.polciy=x"); });
  EXPECT_NE(msg.find("did you mean"), std::string::npos) << msg;
  msg = error_of([&] { qllm::apply_override(c, "novalue"); });
  EXPECT_NE(msg.find("section.key=value"), std::string::npos) << msg;
}

TEST(EngineConfig, YamlRoundTrip) {
  EngineConfig c;
  c.model_path = "some dir/with: colon";
  c.sampling_top_p = 0.9;
  c.model_synthetic_weights = true;
  const auto back = parse_engine_config(qllm::to_yaml(c), "roundtrip");
  EXPECT_EQ(back.model_path, c.model_path);
  EXPECT_DOUBLE_EQ(back.sampling_top_p, 0.9);
  EXPECT_TRUE(back.model_synthetic_weights);
}

TEST(EngineConfig, DefaultYamlListsEveryKeyWithItsDefault) {
  // configs/default.yaml is the documented default: it must equal to_yaml({}).
  const auto path = std::filesystem::path(QLLM_SOURCE_DIR) / "configs" / "default.yaml";
  const std::string text = read(path);
  const std::string expected = qllm::to_yaml(EngineConfig{});
  const auto body = text.substr(text.find("model:"));
  EXPECT_EQ(body, expected) << "regenerate configs/default.yaml with `qllm config --defaults`";
}

TEST(EngineConfig, ShippedConfigsLoad) {
  const auto dir = std::filesystem::path(QLLM_SOURCE_DIR) / "configs";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(qllm::load_engine_config(e.path())) << e.path();
    ++n;
  }
  EXPECT_GE(n, 2);
}

TEST(EngineConfig, KeysAreDocumented) {
  const auto keys = qllm::config_keys();
  EXPECT_GT(keys.size(), 20u);
  for (const auto& k : keys) EXPECT_FALSE(k.doc.empty()) << k.path;
  const auto md = qllm::config_keys_markdown();
  EXPECT_NE(md.find("`scheduler.policy`"), std::string::npos);
}

TEST(EngineConfig, MissingFileIsAnError) {
  const auto msg = error_of([] { qllm::load_engine_config("/nonexistent/qllm.yaml"); });
  EXPECT_NE(msg.find("/nonexistent/qllm.yaml"), std::string::npos) << msg;
}
