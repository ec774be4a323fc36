// make_model: plan and write a synthetic Hugging Face checkpoint folder.
#include "engine/model/make_model.h"

#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/model/presets.h"
#include "engine/model/safetensors.h"
#include "engine/model/synthetic_weights.h"
#include "engine/model/tokenizer_files.h"
#include "profiling/nvtx.h"

#include <fmt/format.h>

#include <fstream>

namespace qllm {
namespace {

namespace fs = std::filesystem;

Arch resolve_arch(const MakeModelOptions& o) {
  Arch a = Arch::Mixtral;
  if (!o.arch.empty()) {
    if (!parse_arch(o.arch, a))
      fail("make-model: unknown architecture '{}' (choose mixtral, qwen3_moe or olmoe)", o.arch);
    return a;
  }
  return detail::preset_arch(o.preset).value_or(Arch::Mixtral);
}

struct Plan {
  MakeModelResult result;
  detail::TokenizerPlan tokenizer;
  ExpertLayout layout = ExpertLayout::PerExpert;
  std::vector<TensorSpec> specs;
  std::vector<std::vector<size_t>> shards;  // spec indices per weight file
};

Plan make_plan(const MakeModelOptions& o) {
  validate_make_model_options(o);
  const Arch arch = resolve_arch(o);
  const detail::ModelPreset& p = detail::find_preset(o.preset, arch);
  Plan plan;
  plan.tokenizer = o.tokenizer_dir.empty() ? detail::generated_tokenizer(o.generated_vocab)
                                           : detail::copied_tokenizer(o.tokenizer_dir);
  const int tok = plan.tokenizer.size;
  int vocab = 0;
  if (p.real) {
    vocab = p.vocab;
    if (tok > vocab)
      fail("make-model: the tokenizer from {} has {} tokens, more than the {} preset's vocab_size {}",
           plan.tokenizer.label, tok, p.name, vocab);
  } else {
    vocab = (tok + 63) / 64 * 64;
  }
  detail::SpecialIds ids = plan.tokenizer.ids;
  auto fallback = [&](std::optional<int>& id, const std::optional<int>& preset_id) {
    if (!id && preset_id && *preset_id < tok) id = preset_id;
  };
  if (!o.tokenizer_dir.empty()) {  // a real tokenizer: the real model's ids fit it
    fallback(ids.bos, p.bos);
    fallback(ids.eos, p.eos);
    fallback(ids.pad, p.pad);
  }
  const int layers = o.layers.value_or(p.layers);
  MakeModelResult& r = plan.result;
  r.config = detail::preset_config(p, layers, vocab, o.dtype, ids);
  r.generation_config = detail::preset_generation_config(p, ids);
  r.desc = parse_model_desc(r.config, "generated config.json");
  r.desc.generation = parse_generation_config(r.generation_config, "generated generation_config.json");
  r.tokenizer = plan.tokenizer.label;

  plan.layout = o.fused_experts ? ExpertLayout::Fused : ExpertLayout::PerExpert;
  plan.specs = r.desc.tensor_specs(plan.layout);
  const uint64_t es = dtype_size(o.dtype);
  uint64_t in_shard = 0;
  for (size_t i = 0; i < plan.specs.size(); ++i) {
    const uint64_t bytes = uint64_t(plan.specs[i].numel()) * es;
    if (plan.shards.empty() || (o.max_shard_bytes > 0 && in_shard > 0 && in_shard + bytes > o.max_shard_bytes)) {
      plan.shards.emplace_back();
      in_shard = 0;
    }
    plan.shards.back().push_back(i);
    in_shard += bytes;
    r.total_bytes += bytes;
  }
  if (o.max_shard_bytes == 0) {
    r.weight_files = {"model.safetensors"};
  } else {
    for (size_t s = 0; s < plan.shards.size(); ++s)
      r.weight_files.push_back(fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, plan.shards.size()));
  }
  return plan;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) fail("make-model: cannot write {}", p.string());
}

void prepare_dir(const MakeModelOptions& o) {
  std::error_code ec;
  if (fs::exists(o.out_dir, ec) && !fs::is_directory(o.out_dir, ec))
    fail("make-model: {} exists and is not a folder", o.out_dir.string());
  if (fs::is_directory(o.out_dir, ec) && !fs::is_empty(o.out_dir, ec)) {
    if (!o.force)
      fail("make-model: {} is not empty; pass --force to write into it (old weight files are replaced)",
           o.out_dir.string());
    for (const auto& entry : fs::directory_iterator(o.out_dir)) {
      const std::string n = entry.path().filename().string();
      // Old weights and config go first: a folder that fails half-way never
      // pairs a new config.json with old weights (config.json is written last).
      const bool weights = n.rfind("model", 0) == 0 && n.find(".safetensors") != std::string::npos;
      if (entry.is_regular_file() && (weights || n == "config.json")) fs::remove(entry.path());
    }
  }
  fs::create_directories(o.out_dir, ec);
  if (ec) fail("make-model: cannot create {}: {}", o.out_dir.string(), ec.message());
}

}  // namespace

std::vector<std::string> model_presets() { return detail::preset_names(); }

void validate_make_model_options(const MakeModelOptions& o) {
  if (!o.dry_run && o.out_dir.empty()) fail("make-model: no output folder given");
  if (o.layers && (*o.layers < 1 || *o.layers > 1024))
    fail("make-model: --layers {} is out of range (1 to 1024)", *o.layers);
  if (!is_weight_dtype(o.dtype))
    fail("make-model: --dtype {} is not supported (bf16, f16 or f32)", dtype_name(o.dtype));
  if (o.tokenizer_dir.empty() && (o.generated_vocab < 259 || o.generated_vocab > (1 << 20)))
    fail("make-model: generated tokenizer size {} is out of range (259 to {})", o.generated_vocab, 1 << 20);
  if (!o.tokenizer_dir.empty() && !fs::is_regular_file(o.tokenizer_dir / "tokenizer.json"))
    fail("make-model: --tokenizer-from {}: no tokenizer.json there", o.tokenizer_dir.string());
  Arch a{};
  if (!o.arch.empty() && !parse_arch(o.arch, a))
    fail("make-model: unknown architecture '{}' (choose mixtral, qwen3_moe or olmoe)", o.arch);
  (void)detail::find_preset(o.preset, resolve_arch(o));
}

MakeModelResult plan_model(const MakeModelOptions& o) { return make_plan(o).result; }

MakeModelResult make_model(const MakeModelOptions& o) {
  Plan plan = make_plan(o);
  if (o.dry_run) return plan.result;
  prof::Range range("make_model/write");
  prepare_dir(o);
  const MakeModelResult& r = plan.result;

  std::optional<Progress> progress;
  if (o.progress) progress.emplace(fmt::format("write {}", o.out_dir.string()), r.total_bytes);
  uint64_t base = 0;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    uint64_t shard_bytes = 0;
    for (size_t i : plan.shards[s]) {
      const TensorSpec& spec = plan.specs[i];
      w.add(spec.name, o.dtype, spec.shape, SynthFill(r.desc, spec, o.dtype, o.seed));
      weight_map[spec.name] = r.weight_files[s];
      shard_bytes += uint64_t(spec.numel()) * dtype_size(o.dtype);
    }
    w.write(o.out_dir / r.weight_files[s], [&](uint64_t done, uint64_t total) {
      if (progress) progress->update(base + std::min(done, total) * shard_bytes / std::max<uint64_t>(total, 1));
    });
    base += shard_bytes;
  }
  if (o.max_shard_bytes > 0) {
    const nlohmann::json index{{"metadata", {{"total_size", r.total_bytes}}}, {"weight_map", weight_map}};
    write_text(o.out_dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  if (progress) progress->finish();
  detail::write_tokenizer(plan.tokenizer, o.out_dir);
  write_text(o.out_dir / "generation_config.json", r.generation_config.dump(2) + "\n");
  write_text(o.out_dir / "config.json", r.config.dump(2) + "\n");  // last: marks the folder complete
  return plan.result;
}

}  // namespace qllm
