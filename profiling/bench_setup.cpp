#include "profiling/bench_setup.h"

#include "engine/common/error.h"
#include "engine/gpu/device_weights.h"
#include "engine/model/make_model.h"
#include "kernels/cuda_check.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <numeric>

namespace qllm::bench {

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = int(v.size());
  const size_t h = v.size() / 2;
  s.median = v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
  auto rank = [&](double q) { return v[std::max<size_t>(1, size_t(std::ceil(q * double(v.size())))) - 1]; };
  s.p90 = rank(0.90);
  s.p99 = rank(0.99);
  s.min = v.front();
  s.max = v.back();
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  return s;
}

nlohmann::ordered_json to_json(const Stats& s) {
  return {{"n", s.n},     {"median", s.median}, {"p90", s.p90}, {"p99", s.p99},
          {"min", s.min}, {"max", s.max},       {"mean", s.mean}};
}

std::string commit_of(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* e = std::getenv("QLLM_COMMIT"); e != nullptr && *e != '\0') return e;
  std::string out;
  if (FILE* f = popen("git rev-parse --short HEAD 2>/dev/null", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof(buf), f) != nullptr) out = buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string command_line(int argc, char** argv) {
  std::string cmd;
  for (int i = 0; i < argc; ++i) cmd += (i ? " " : "") + std::string(argv[i]);
  return cmd;
}

nlohmann::ordered_json run_header(const std::string& benchmark, const std::string& commit, int argc, char** argv,
                                  const cuda::DeviceReport& report, const cuda::DeviceInfo& dev) {
  return {{"benchmark", benchmark},
          {"commit", commit_of(commit)},
          {"date", utc_now()},
          {"command", command_line(argc, argv)},
          {"device", device_json(report, dev)}};
}

void save_json(const std::string& path, nlohmann::ordered_json& out, bool complete) {
  if (path.empty()) return;
  out["complete"] = complete;
  std::ofstream f(path);
  f << out.dump(2) << "\n";
  if (!f) fail("cannot write {}", path);
}

nlohmann::ordered_json device_json(const cuda::DeviceReport& report, const cuda::DeviceInfo& dev) {
  int l2_bytes = 0;
  QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev.index));
  return {{"name", dev.name},
          {"compute_capability", fmt::format("{}.{}", dev.cc_major, dev.cc_minor)},
          {"sm_count", dev.sm_count},
          {"l2_bytes", l2_bytes},
          {"memory_bytes", dev.total_mem},
          {"runtime_version", report.runtime_version},
          {"driver_version", report.driver_version}};
}

nlohmann::ordered_json shape_json(const ModelDesc& d, int layers_total) {
  return {{"architecture", d.architecture},   {"hidden", d.hidden},         {"layers", d.layers},
          {"layers_total", layers_total},     {"heads", d.heads},           {"kv_heads", d.kv_heads},
          {"head_dim", d.head_dim},           {"vocab", d.vocab},           {"experts", d.num_experts},
          {"top_k", d.top_k},                 {"expert_ffn", d.expert_ffn}, {"dense_ffn", d.dense_ffn},
          {"moe_layers", d.num_moe_layers()}, {"qk_norm", std::string(qk_norm_name(d.qk_norm))}};
}

std::string unknown_preset(const std::string& name) {
  const auto presets = model_presets();
  if (std::find(presets.begin(), presets.end(), name) != presets.end()) return {};
  std::string names;
  for (const auto& p : presets) names += (names.empty() ? "" : ", ") + p;
  return fmt::format("unknown --model '{}' (one of {})", name, names);
}

ModelDesc preset_desc(const std::string& preset, const std::string& arch) {
  MakeModelOptions mo;
  mo.preset = preset;
  mo.arch = arch;
  mo.dry_run = true;
  mo.progress = false;
  return plan_model(mo).desc;
}

LayerChoice choose_layers(const std::string& prog, const std::string& name, const ModelDesc& full,
                          const gpu::MemoryParams& mp, int64_t graphs, int want, double reserve_gib) {
  LayerChoice c;
  const gpu::DeviceMemoryPlan plan = gpu::plan_device_memory(full, mp);
  size_t free_b = 0, total_b = 0;
  QLLM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  c.free_bytes = free_b;
  c.total_bytes = total_b;
  c.set_aside = uint64_t(reserve_gib * double(uint64_t(1) << 30)) +
                uint64_t(std::max<int64_t>(0, graphs)) * kGraphAllowance;
  const uint64_t budget = free_b > c.set_aside ? free_b - c.set_aside : 0;
  if (want > 0) {
    c.layers = std::min(want, full.layers);
    if (plan.layers_that_fit(free_b) < c.layers)
      fail("{}: {} layers do not fit: {}", name, c.layers,
           plan.fit_error(name, gpu::keep_layers(full, c.layers), free_b));
    if (plan.layers_that_fit(budget) < c.layers)
      std::fprintf(stderr, "%s: warning: %d layers leave less than %s for graphs and libraries\n", prog.c_str(),
                   c.layers, gpu::format_gb(c.set_aside).c_str());
  } else {
    c.layers = plan.layers_that_fit(budget);
    if (c.layers < 1)
      fail("{}: not even one layer fits in {} free less {} set aside: {}", name, gpu::format_gb(free_b),
           gpu::format_gb(c.set_aside), plan.fit_error(name, full, budget));
  }
  return c;
}

}  // namespace qllm::bench
