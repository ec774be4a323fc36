#include "engine/gpu/memory_plan.h"

#include "engine/common/error.h"

#include <fmt/format.h>

#include <cctype>

namespace qllm::gpu {

std::string format_gb(uint64_t bytes) { return fmt::format("{:.1f} GB", double(bytes) / 1e9); }

DeviceMemoryPlan plan_device_memory(const ModelDesc& d, const MemoryParams& p) {
  QLLM_CHECK_MSG(p.slots >= 1, "memory plan: {} slots", p.slots);
  QLLM_CHECK_MSG(p.kv_blocks >= 0, "memory plan: {} KV blocks", p.kv_blocks);
  DeviceMemoryPlan m;
  m.layers = d.layers;
  m.dtype = p.dtype;
  const WeightLayout w = plan_weight_layout(d, p.dtype);
  m.weight_global_bytes = w.global_bytes;
  for (int l = 0; l < d.layers; ++l) m.weight_layer_bytes.push_back(w.layer_bytes(l));
  m.weight_bytes = w.total_bytes;
  if (p.kv_blocks > 0) {
    const KvLayout kv = plan_kv_layout(d, p.kv_blocks, p.slot.block_size, p.dtype);
    m.kv_layer_bytes = kv.layer_bytes();
    m.kv_bytes = kv.total_bytes();
  }
  m.slot = plan_slot_layout(d, p.slot, p.gemm_workspace_bytes);
  m.slots = p.slots;
  m.slot_bytes = m.slot.bytes;
  m.gemm_context_bytes = p.gemm_workspace_bytes;
  m.total_bytes = m.weight_bytes + m.kv_bytes + uint64_t(m.slots) * m.slot_bytes + m.gemm_context_bytes;
  return m;
}

uint64_t DeviceMemoryPlan::fixed_bytes() const {
  return weight_global_bytes + uint64_t(slots) * slot_bytes + gemm_context_bytes;
}

int DeviceMemoryPlan::layers_that_fit(uint64_t free_bytes) const {
  uint64_t used = fixed_bytes();
  if (used > free_bytes) return 0;
  int n = 0;
  for (uint64_t lb : weight_layer_bytes) {
    used += lb + kv_layer_bytes;
    if (used > free_bytes) break;
    ++n;
  }
  return n;
}

std::string DeviceMemoryPlan::fit_error(std::string_view model, const ModelDesc& d, uint64_t free_bytes) const {
  if (fits(free_bytes)) return {};
  std::string dt(dtype_name(dtype));
  for (char& c : dt) c = char(std::tolower(static_cast<unsigned char>(c)));
  const std::string name = model.empty() ? d.architecture : std::string(model);
  return fmt::format(
      "{} {} weights need {} (with the KV cache, slot buffers and workspaces: {}); {} free: {} of {} layers fit; "
      "use model.max_layers or a GPU with more memory",
      name, dt, format_gb(weight_bytes), format_gb(total_bytes), format_gb(free_bytes),
      layers_that_fit(free_bytes), layers);
}

}  // namespace qllm::gpu
