// qllm inspect DIR: architecture, sizes, tensor table, parameters and bytes.
#include "engine/cli/commands.h"
#include "engine/model/builtin.h"
#include "engine/model/checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace qllm::cli {
namespace {

std::string gib(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.2f} MiB", double(b) / double(1ull << 20));
  return fmt::format("{:.1f} KiB", double(b) / 1024.0);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

Run add_inspect(CLI::App& app) {
  struct Opts {
    std::string dir;
    bool no_tensors = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("dir", o->dir, "checkpoint folder (or builtin:tiny-mixtral, ...)")->required();
  app.add_flag("--summary", o->no_tensors, "leave out the tensor table");
  app.add_flag("--json", o->json, "print JSON instead of text");
  return [o]() -> int {
    const auto dir = resolve_model_path(o->dir);
    const auto ck = Checkpoint::open(dir);
    const auto& d = ck.desc();
    const auto pc = d.param_counts();
    const auto dt = d.weight_dtype();
    const auto traffic = d.decode_bytes_per_token(dt);
    const auto table = ck.tensor_table();
    if (o->json) {
      nlohmann::ordered_json j;
      j["dir"] = dir.string();
      j["architecture"] = d.architecture;
      j["model_type"] = d.model_type;
      j["hidden"] = d.hidden;
      j["layers"] = d.layers;
      j["heads"] = d.heads;
      j["kv_heads"] = d.kv_heads;
      j["head_dim"] = d.head_dim;
      j["vocab"] = d.vocab;
      j["experts"] = d.num_experts;
      j["top_k"] = d.top_k;
      j["expert_ffn"] = d.expert_ffn;
      j["dense_ffn"] = d.dense_ffn;
      j["moe_layers"] = d.num_moe_layers();
      j["qk_norm"] = qk_norm_name(d.qk_norm);
      j["norm_topk_prob"] = d.norm_topk_prob;
      j["tie_word_embeddings"] = d.tie_word_embeddings;
      j["expert_layout"] = layout_name(ck.expert_layout());
      j["shards"] = ck.num_shards();
      j["params"] = pc.total();
      j["active_params"] = d.active_param_count();
      j["tensor_bytes"] = ck.total_bytes();
      j["decode_bytes_per_token"] = traffic.total();
      j["warnings"] = ck.warnings();
      if (!o->no_tensors) {
        auto& arr = j["tensors"] = nlohmann::ordered_json::array();
        for (const auto& t : table)
          arr.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape},
                         {"shard", t.shard}, {"bytes", t.nbytes}});
      }
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    fmt::print("{}\n\n", dir.string());
    fmt::print("{}\n\n", d.summary());
    fmt::print("expert layout      {}\n", layout_name(ck.expert_layout()));
    fmt::print("weight files       {} ({})\n", ck.num_shards(), ck.sharded() ? "sharded" : "single file");
    fmt::print("parameters         {} ({:.3f} B), {} active per token\n", pc.total(),
               double(pc.total()) * 1e-9, d.active_param_count());
    fmt::print("  embed {}  lm_head {}  attention {}  router {}  experts {}  dense {}  norms {}\n",
               pc.embed, pc.lm_head, pc.attention, pc.router, pc.experts, pc.dense_mlp, pc.norms);
    fmt::print("tensor bytes       {} ({})\n", ck.total_bytes(), gib(ck.total_bytes()));
    fmt::print("decode bytes/token {} ({}) in {}: attention {}, experts {}, lm_head {}\n",
               traffic.total(), gib(uint64_t(traffic.total())), dtype_name(dt),
               gib(uint64_t(traffic.attention)), gib(uint64_t(traffic.experts)),
               gib(uint64_t(traffic.lm_head)));
    fmt::print("KV cache           {} bytes per token (bf16)\n", d.kv_bytes_per_token(DType::BF16));
    for (const auto& w : ck.warnings()) fmt::print("warning: {}\n", w);
    if (!o->no_tensors) {
      fmt::print("\n{} tensors:\n", table.size());
      size_t wname = 4;
      for (const auto& t : table) wname = std::max(wname, t.name.size());
      for (const auto& t : table)
        fmt::print("  {:<{}}  {:<5} {:<20} {:>14L}  {}\n", t.name, wname, dtype_name(t.dtype),
                   shape_str(t.shape), t.nbytes, t.shard);
    }
    return 0;
  };
}

}  // namespace qllm::cli
