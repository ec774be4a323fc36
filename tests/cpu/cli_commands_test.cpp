// The qllm command line, driven as a user drives it: exit codes, output, and
// clear errors on bad input (never a crash).
#include "tests/cli_test_util.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

namespace {

using Result = qllm::test::CliResult;
using qllm::test::run_qllm;

bool has(const Result& r, const std::string& s) { return r.out.find(s) != std::string::npos; }

}  // namespace

TEST(Cli, HelpListsSubcommands) {
  const auto r = run_qllm("--help");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* sub : {"generate", "run", "inspect", "make-model", "tokenize", "config"})
    EXPECT_TRUE(has(r, sub)) << sub;
}

TEST(Cli, MakeModelThenInspect) {
  const auto dir = qllm::test::temp_dir("cli-make") / "m";
  auto r = run_qllm("make-model --arch qwen3_moe --preset tiny --dtype f16 --seed 3 --shard-gib 0.0002 -q --out '" +
                dir.string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors.index.json")) << r.out;
  r = run_qllm("inspect '" + dir.string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "Qwen3MoeForCausalLM")) << r.out;
  EXPECT_TRUE(has(r, "model.layers.0.mlp.experts.0.gate_proj.weight")) << r.out;
  EXPECT_TRUE(has(r, "F16")) << r.out;
  EXPECT_TRUE(has(r, "sharded")) << r.out;
  r = run_qllm("inspect --json --summary '" + dir.string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "\"architecture\": \"Qwen3MoeForCausalLM\"")) << r.out;
  // Refuses to overwrite without --force.
  r = run_qllm("make-model --arch olmoe -q --out '" + dir.string() + "'");
  EXPECT_EQ(r.code, 1) << r.out;
}

TEST(Cli, DryRunOfRealShapes) {
  const auto r = run_qllm("make-model --preset mixtral-8x7b --dry-run -q");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "46702792704")) << r.out;  // Mixtral-8x7B's published parameter count
  EXPECT_TRUE(has(r, "nothing written")) << r.out;
}

TEST(Cli, InspectRefusesMalformedCheckpoints) {
  const auto dir = qllm::test::temp_dir("cli-bad");
  auto r = run_qllm("inspect '" + dir.string() + "'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "config.json")) << r.out;
  // A weights file cut short.
  const auto m = dir / "m";
  ASSERT_EQ(run_qllm("make-model --arch mixtral -q --out '" + m.string() + "'").code, 0);
  const auto st = m / "model.safetensors";
  std::filesystem::resize_file(st, std::filesystem::file_size(st) - 100);
  r = run_qllm("inspect '" + m.string() + "'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "model.safetensors")) << r.out;
  EXPECT_FALSE(has(r, "Segmentation")) << r.out;
}

TEST(Cli, TokenizeMatchesHuggingFaceIds) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/olmoe/tokenizer.json");
  const auto tok = (qllm::test::shared_data_dir() / "tokenizers/olmoe/tokenizer.json").string();
  // From tokenizers/olmoe/ggml-prompts-gpt-neox.txt (ids from HF tokenizers).
  auto r = run_qllm("tokenize --tokenizer '" + tok + "'", "Hello World!");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "12092 3645 2\n");
  r = run_qllm("tokenize --decode --tokenizer '" + tok + "'", "12092 3645 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "Hello World!");
}

TEST(Cli, TokenizeAddSpecial) {
  QLLM_REQUIRE_SHARED_DATA("tokenizers/mixtral/tokenizer.json");
  const auto dir = (qllm::test::shared_data_dir() / "tokenizers/mixtral").string();
  const auto plain = run_qllm("tokenize --tokenizer '" + dir + "'", "Hello");
  const auto special = run_qllm("tokenize --add-special --tokenizer '" + dir + "'", "Hello");
  ASSERT_EQ(plain.code, 0) << plain.out;
  ASSERT_EQ(special.code, 0) << special.out;
  EXPECT_EQ(special.out, "1 " + plain.out);  // <s> = 1
}

TEST(Cli, TokenizeErrors) {
  auto r = run_qllm("tokenize --tokenizer /nonexistent/tokenizer.json", "x");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "/nonexistent")) << r.out;
  r = run_qllm("tokenize --decode --tokenizer builtin:tiny-mixtral", "1 two 3");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "'two'")) << r.out;
}

TEST(Cli, GenerateOnTheBuiltinModel) {
  const auto r = run_qllm("generate --prompt 'Hello there' -n 8 --ignore-eos --show-ids");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "generated ids:")) << r.out;
  EXPECT_TRUE(has(r, "decode 8 tokens")) << r.out;
  // Greedy decoding is deterministic.
  const auto again = run_qllm("generate --prompt 'Hello there' -n 8 --ignore-eos --show-ids");
  const auto ids = [](const std::string& s) { return s.substr(s.find("generated ids:")).substr(0, 60); };
  EXPECT_EQ(ids(r.out), ids(again.out));
}

TEST(Cli, GenerateWithChatTemplateOnEveryArch) {
  for (const char* m : {"builtin:tiny-mixtral", "builtin:tiny-qwen3_moe", "builtin:tiny-olmoe"}) {
    const auto r = run_qllm(std::string("generate --chat -m ") + m + " --prompt hi -n 4 --temperature 0.8 --seed 7");
    EXPECT_EQ(r.code, 0) << m << "\n" << r.out;
  }
}

TEST(Cli, ConfigErrorsNameFileAndKey) {
  const auto f = qllm::test::temp_dir("cli-config") / "bad.yaml";
  {
    std::ofstream o(f);
    o << "scheduler:\n  polcy: priority-expert\n";
  }
  auto r = run_qllm("generate -c '" + f.string() + "' --prompt x");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "bad.yaml:2")) << r.out;
  EXPECT_TRUE(has(r, "scheduler.polcy")) << r.out;
  r = run_qllm("generate --set model.path=builtin:huge --prompt x");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "builtin:huge")) << r.out;
  r = run_qllm("config --keys");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(has(r, "`scheduler.prefill_chunk`")) << r.out;
}

TEST(Cli, RunComparesPoliciesAndWritesEverySample) {
  const auto out = qllm::test::temp_dir("cli-run") / "run.json";
  const auto wl = std::string(QLLM_SOURCE_DIR) + "/configs/workloads/tiny-mixed.yaml";
  auto r = run_qllm("run -q --set scheduler.dispatcher=cpu --workload '" + wl +
                    "' --policies fcfs-iteration,priority-expert --out '" +
                    out.string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "fcfs-iteration")) << r.out;
  EXPECT_TRUE(has(r, "priority-expert")) << r.out;
  EXPECT_TRUE(has(r, "Mean TTFT (ms)")) << r.out;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string json = ss.str();
  EXPECT_NE(json.find("\"records\""), std::string::npos);
  EXPECT_NE(json.find("\"token_times_s\""), std::string::npos);
  r = run_qllm("run -q --workload '" + wl + "' --policies lifo");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(has(r, "lifo")) << r.out;
  r = run_qllm("run -q --workload /nonexistent.yaml");
  EXPECT_EQ(r.code, 1) << r.out;
}
