// Built-in default models: "builtin:tiny-mixtral", "builtin:tiny-qwen3_moe",
// "builtin:tiny-olmoe". The first use writes the seeded tiny checkpoint (with a
// generated tokenizer) into the cache folder; later uses find it there.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace qllm {

// $QLLM_CACHE_DIR, else $XDG_CACHE_HOME/qllm, else $HOME/.cache/qllm, else
// <tmp>/qllm-cache.
std::filesystem::path cache_dir();

bool is_builtin_model(std::string_view path);

// Returns a checkpoint folder for `path`: itself when it is a folder path, or
// the cached built-in model (written on first use, atomically, so concurrent
// processes never see half a checkpoint). Throws qllm::Error for an unknown
// builtin name.
std::filesystem::path resolve_model_path(std::string_view path, bool progress = true);

}  // namespace qllm
