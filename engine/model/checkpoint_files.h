// Internal to Checkpoint: finding and opening the safetensors files of a
// folder (single file or sharded with an index), with the index validated.
#pragma once

#include "engine/model/checkpoint.h"
#include "engine/model/safetensors.h"

#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace qllm::detail {

struct ShardSet {
  struct Loc {
    size_t shard = 0;
    size_t entry = 0;  // index into the shard's header().tensors
  };
  bool sharded = false;
  std::filesystem::path index_path;  // when sharded
  std::vector<std::string> names;    // shard file names, in opening order
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::unordered_map<std::string, Loc> tensors;  // every tensor of every shard
  std::vector<std::string> warnings;
  uint64_t total_bytes = 0;  // tensor bytes

  const TensorEntry& entry(const Loc& l) const { return files[l.shard]->header().tensors[l.entry]; }
  TensorView view(const Loc& l) const { return files[l.shard]->tensor(entry(l).name); }
};

// model.safetensors, or model.safetensors.index.json and its shards.
ShardSet open_shards(const std::filesystem::path& dir, const CheckpointOptions& opts);

}  // namespace qllm::detail
