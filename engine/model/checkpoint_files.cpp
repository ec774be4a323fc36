// Opening the safetensors files of a checkpoint folder; validating the index.
#include "engine/model/checkpoint_files.h"

#include "engine/common/error.h"
#include "engine/common/progress.h"
#include "engine/model/json_read.h"
#include "profiling/nvtx.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>

namespace qllm::detail {
namespace {

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

// The shards an index names, with the tensors it maps to each.
struct IndexPlan {
  std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensors
  std::map<std::string, std::string> weight_map;
  std::optional<uint64_t> total_size;
};

IndexPlan read_index(const std::filesystem::path& p) {
  const nlohmann::json j = read_json_file(p);
  const JsonReader r(j, p.string());
  IndexPlan plan;
  if (const auto* m = r.find("metadata")) {
    if (!m->is_object())
      r.fail_key("metadata", fmt::format("expected an object, found {}", describe_json(*m)));
    const JsonReader mr(*m, p.string() + " (metadata)");
    if (auto t = mr.opt_int("total_size", 0, INT64_MAX)) plan.total_size = static_cast<uint64_t>(*t);
  }
  const auto* wm = r.find("weight_map");
  if (!wm) r.fail_key("weight_map", "required object is missing (tensor name -> shard file)");
  if (!wm->is_object())
    r.fail_key("weight_map", fmt::format("expected an object of tensor name -> shard file, found {}",
                                         describe_json(*wm)));
  if (wm->empty()) r.fail_key("weight_map", "is empty: the index names no tensor");
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string())
      r.fail_key("weight_map", fmt::format("tensor '{}': expected a shard file name, found {}", name,
                                           describe_json(shard)));
    const std::string s = shard.get<std::string>();
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos ||
        s.find('\\') != std::string::npos || s.find('\0') != std::string::npos)
      r.fail_key("weight_map", fmt::format("tensor '{}': shard '{}' must be a plain file name in the "
                                           "checkpoint folder", name, s));
    plan.by_shard[s].push_back(name);
    plan.weight_map[name] = s;
  }
  return plan;
}

uint64_t file_size_or_zero(const std::filesystem::path& p) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

void prefault(const SafetensorsFile& f, Progress* progress, uint64_t& done) {
  // Touch one byte per page of each tensor so the kernel reads the file in.
  volatile uint8_t sink = 0;
  for (const auto& e : f.header().tensors) {
    const TensorView v = f.tensor(e.name);
    for (size_t i = 0; i < v.nbytes; i += 4096) sink = static_cast<uint8_t>(sink ^ v.data[i]);
    done += v.nbytes;
    if (progress) progress->update(done);
  }
  (void)sink;
}

}  // namespace

ShardSet open_shards(const std::filesystem::path& dir, const CheckpointOptions& opts) {
  prof::Range range("load/checkpoint_files");
  ShardSet set;
  std::error_code ec;
  const auto single = dir / kSingle;
  const auto index = dir / kIndex;
  const bool have_single = std::filesystem::exists(single, ec);
  const bool have_index = std::filesystem::exists(index, ec);
  if (!have_single && !have_index)
    fail("{}: no weights: expected {} or {} with its shards", dir.string(), kSingle, kIndex);

  IndexPlan plan;
  if (have_single) {
    if (have_index)
      set.warnings.push_back(fmt::format("{} and {} both exist: using {}", kSingle, kIndex, kSingle));
    set.names.push_back(kSingle);
  } else {
    set.sharded = true;
    set.index_path = index;
    plan = read_index(index);
    for (const auto& [shard, tensors] : plan.by_shard) {
      if (!std::filesystem::is_regular_file(dir / shard, ec))
        fail("{}: weight_map names shard '{}' (for '{}'{}) but {} does not exist", index.string(), shard,
             tensors.front(),
             tensors.size() > 1 ? fmt::format(" and {} more tensors", tensors.size() - 1) : "",
             (dir / shard).string());
      set.names.push_back(shard);
    }
  }

  uint64_t file_total = 0;
  for (const auto& n : set.names) file_total += file_size_or_zero(dir / n);
  std::optional<Progress> progress;
  if (opts.progress) progress.emplace(fmt::format("open {}", dir.string()), file_total);
  uint64_t done = 0;
  for (size_t s = 0; s < set.names.size(); ++s) {
    const auto path = dir / set.names[s];
    try {
      set.files.push_back(std::make_unique<SafetensorsFile>(path));
    } catch (const Error& e) {
      if (!set.sharded) throw;
      fail("{}: shard '{}': {}", index.string(), set.names[s], e.what());
    }
    const SafetensorsFile& f = *set.files.back();
    const auto& entries = f.header().tensors;
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& name = entries[i].name;
      auto [it, fresh] = set.tensors.emplace(name, ShardSet::Loc{s, i});
      if (!fresh)
        fail("{}: tensor '{}' is in two shards: '{}' and '{}'", set.sharded ? index.string() : dir.string(),
             name, set.names[it->second.shard], set.names[s]);
      set.total_bytes += entries[i].end - entries[i].begin;
      if (set.sharded) {
        const auto m = plan.weight_map.find(name);
        if (m == plan.weight_map.end())
          set.warnings.push_back(fmt::format("tensor '{}' in shard '{}' is not listed in {}", name,
                                             set.names[s], kIndex));
        else if (m->second != set.names[s])
          fail("{}: weight_map puts tensor '{}' in shard '{}' but it is in shard '{}'", index.string(),
               name, m->second, set.names[s]);
      }
    }
    if (set.sharded)
      for (const auto& name : plan.by_shard[set.names[s]])
        if (!f.contains(name))
          fail("{}: weight_map puts tensor '{}' in shard '{}', which holds no such tensor", index.string(),
               name, set.names[s]);
    if (opts.prefault) {
      prefault(f, progress ? &*progress : nullptr, done);
    } else if (progress) {
      done += file_size_or_zero(path);
      progress->update(done);
    }
  }
  if (set.sharded && plan.total_size && *plan.total_size != set.total_bytes)
    set.warnings.push_back(fmt::format("{}: metadata.total_size is {} but the shards hold {} tensor bytes",
                                       kIndex, *plan.total_size, set.total_bytes));
  return set;
}

}  // namespace qllm::detail
