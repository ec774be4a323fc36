// How much device memory the GPU forward pass needs, before allocating any:
// weights, KV cache, the slots' buffers and the GEMM workspaces, from the
// same layouts the allocations use (layout.h), and how many layers fit in a
// given amount of free memory. Pure: tested on the CPU at the real shapes.
//
//   auto plan = gpu::plan_device_memory(desc, {.slots = 2, .kv_blocks = 4096});
//   if (auto why = plan.fit_error("Mixtral-8x7B", free_bytes); !why.empty()) fail("{}", why);
//
// total = weights + KV cache + slots x slot buffers + the GemmContext's own
//         workspace (GEMM plans are chosen for that workspace size; every slot
//         has a workspace of the same size, since slots may run side by side)
#pragma once

#include "engine/common/dtype.h"
#include "engine/gpu/layout.h"
#include "engine/model/model_desc.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qllm::gpu {

inline constexpr uint64_t kDefaultGemmWorkspaceBytes = uint64_t(32) << 20;  // GemmContext's default

struct MemoryParams {
  int slots = 2;                 // scheduler.ls_slots + scheduler.be_slots
  SlotShape slot;                // tokens and sequences per step, block size, max_seq_len
  int64_t kv_blocks = 0;         // KV-cache blocks (of slot.block_size tokens)
  DType dtype = DType::BF16;     // weights and KV cache
  uint64_t gemm_workspace_bytes = kDefaultGemmWorkspaceBytes;
};

struct DeviceMemoryPlan {
  int layers = 0;
  DType dtype = DType::BF16;
  uint64_t weight_global_bytes = 0;             // embedding, final norm, LM head
  std::vector<uint64_t> weight_layer_bytes;     // per layer
  uint64_t weight_bytes = 0;                    // all of them
  uint64_t kv_layer_bytes = 0;                  // K and V of one layer
  uint64_t kv_bytes = 0;
  SlotLayout slot;                              // one slot's buffers
  int slots = 0;
  uint64_t slot_bytes = 0;                      // slot.bytes
  uint64_t gemm_context_bytes = 0;              // the GemmContext's workspace
  uint64_t total_bytes = 0;

  // What does not grow with the layer count: global weights, slots, GEMM context.
  uint64_t fixed_bytes() const;
  // The most layers n (a prefix: layers 0..n-1) whose weights and KV cache,
  // with fixed_bytes(), fit in free_bytes. 0 when not even one does.
  int layers_that_fit(uint64_t free_bytes) const;
  bool fits(uint64_t free_bytes) const { return total_bytes <= free_bytes; }
  // Empty when fits(free_bytes); otherwise the reason, e.g.
  //   "Mixtral-8x7B bf16 weights need 93.4 GB, the KV cache 1.1 GB, slot buffers
  //    and workspaces 0.2 GB; 78.0 GB free: 26 of 32 layers fit; use
  //    model.max_layers or a GPU with more memory"
  // `model` names the model (empty: its architecture class).
  std::string fit_error(std::string_view model, const ModelDesc& d, uint64_t free_bytes) const;
};

DeviceMemoryPlan plan_device_memory(const ModelDesc& d, const MemoryParams& p);

// Bytes as "93.4 GB" (decimal gigabytes, one decimal).
std::string format_gb(uint64_t bytes);

}  // namespace qllm::gpu
