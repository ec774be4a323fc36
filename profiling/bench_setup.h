// Setup shared by the benchmark programs at real model shapes
// (qllm_bench_model, qllm_bench_dispatch): order statistics, what every JSON
// file says about the run (commit, date, command, GPU, model shape), the
// shape of a make-model preset, and how many of its layers fit on the GPU.
//
//   const ModelDesc full = bench::preset_desc("olmoe-1b-7b");
//   const auto fit = bench::choose_layers("qllm_bench_x", "olmoe-1b-7b", full, mp, graphs, o.layers, 2.0);
//   auto w = gpu::DeviceWeights::synthetic(full, seed, stream, fit.layers);
//   out["device"] = bench::device_json(report, report.devices[0]);
#pragma once

#include "engine/gpu/memory_plan.h"
#include "engine/model/model_desc.h"
#include "kernels/device_info.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace qllm::bench {

// Device bytes set aside per unit graph when choosing how many layers fit.
inline constexpr uint64_t kGraphAllowance = 64u << 10;

// Order statistics of a sample; percentiles by nearest rank.
struct Stats {
  int n = 0;
  double median = 0, p90 = 0, p99 = 0, min = 0, max = 0, mean = 0;
};
Stats stats_of(std::vector<double> v);
nlohmann::ordered_json to_json(const Stats& s);

// `given` when set, else $QLLM_COMMIT, else `git rev-parse --short HEAD`, else "unknown".
std::string commit_of(const std::string& given);
std::string utc_now();  // "2025-01-31T12:00:00Z"
std::string command_line(int argc, char** argv);

// The GPU: name, compute capability, SMs, L2, memory, runtime and driver versions.
nlohmann::ordered_json device_json(const cuda::DeviceReport& report, const cuda::DeviceInfo& dev);
// What every result file starts with: benchmark, commit, date, command, device.
nlohmann::ordered_json run_header(const std::string& benchmark, const std::string& commit, int argc, char** argv,
                                  const cuda::DeviceReport& report, const cuda::DeviceInfo& dev);
// Writes `out` with "complete" set to `complete` to `path` (nothing when
// empty). Programs call it after every section, so a run that dies part way
// keeps what it measured. Throws qllm::Error when the file cannot be written.
void save_json(const std::string& path, nlohmann::ordered_json& out, bool complete);
// The model's shape; `layers_total`: the full model's layer count.
nlohmann::ordered_json shape_json(const ModelDesc& d, int layers_total);

// Empty when `name` is a make-model preset, else "unknown --model 'x' (one of ...)".
std::string unknown_preset(const std::string& name);
// The shape `qllm make-model --preset P [--arch A]` writes (nothing is written).
ModelDesc preset_desc(const std::string& preset, const std::string& arch = {});

// The layers to keep: `want` (> 0) if they fit in free memory (a warning on
// stderr when they leave less than the set-aside), else as many as fit in the
// free memory less `reserve_gib` and kGraphAllowance per unit graph (`graphs`:
// of the whole model). Throws qllm::Error when they do not fit.
struct LayerChoice {
  int layers = 0;
  uint64_t free_bytes = 0, total_bytes = 0, set_aside = 0;
};
LayerChoice choose_layers(const std::string& prog, const std::string& name, const ModelDesc& full,
                          const gpu::MemoryParams& mp, int64_t graphs, int want, double reserve_gib);

}  // namespace qllm::bench
