#include "engine/model/builtin.h"

#include "engine/common/error.h"
#include "engine/model/make_model.h"

#include <cstdlib>
#include <system_error>

#include <unistd.h>

namespace qllm {
namespace {

constexpr std::string_view kPrefix = "builtin:";
// Bump when the generator or the tiny presets change, so caches refresh.
constexpr std::string_view kBuiltinVersion = "v1";

}  // namespace

std::filesystem::path cache_dir() {
  if (const char* d = std::getenv("QLLM_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return std::filesystem::path(x) / "qllm";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::filesystem::path(h) / ".cache" / "qllm";
  return std::filesystem::temp_directory_path() / "qllm-cache";
}

bool is_builtin_model(std::string_view path) { return path.substr(0, kPrefix.size()) == kPrefix; }

std::filesystem::path resolve_model_path(std::string_view path, bool progress) {
  if (!is_builtin_model(path)) return std::filesystem::path(path);
  const std::string_view name = path.substr(kPrefix.size());
  std::string arch;
  for (const char* a : {"mixtral", "qwen3_moe", "olmoe"})
    if (name == std::string("tiny-") + a) arch = a;
  if (arch.empty())
    fail("unknown built-in model '{}': choose builtin:tiny-mixtral, builtin:tiny-qwen3_moe or "
         "builtin:tiny-olmoe",
         path);
  const auto dir = cache_dir() / fmt::format("{}-{}", name, kBuiltinVersion);
  if (std::filesystem::exists(dir / "config.json")) return dir;

  std::error_code ec;
  std::filesystem::create_directories(cache_dir(), ec);
  if (ec) fail("cannot create the cache folder {}: {}", cache_dir().string(), ec.message());
  const auto tmp = cache_dir() / fmt::format(".{}-{}.tmp{}", name, kBuiltinVersion, ::getpid());
  std::filesystem::remove_all(tmp, ec);
  MakeModelOptions o;
  o.out_dir = tmp;
  o.arch = arch;
  o.preset = "tiny";
  o.progress = progress;
  make_model(o);
  std::filesystem::rename(tmp, dir, ec);
  if (ec) {  // another process won the race: use its copy
    std::filesystem::remove_all(tmp);
    if (!std::filesystem::exists(dir / "config.json"))
      fail("cannot move the built-in model into {}: {}", dir.string(), ec.message());
  }
  return dir;
}

}  // namespace qllm
