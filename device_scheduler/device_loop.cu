// The device half of device_loop.h: loop.h's executor on the GPU and the
// scheduler kernel. The host API is in device_loop.cpp (host C++ only: fmt
// and nvcc's consteval checks do not mix).
#include "device_scheduler/device_loop.h"

#include "graphs/capture.h"

namespace qllm::sched {
namespace {

__device__ __forceinline__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// graphs::bucket_of for an unsigned row count (a huge one has no bucket).
__device__ __forceinline__ int bucket_for(uint32_t rows, int buckets) {
  return rows > (1u << 30) ? -1 : graphs::bucket_of(int(rows), buckets);
}

// loop.h's executor on the GPU, for one cycle of one thread. The unit the
// previous cycle launched has finished when this cycle runs (the tail launch
// waits for the launching graph's fire-and-forget children), so what it wrote
// is in device memory; the reads below bypass L1 (ld.cg) all the same.
struct GpuExec {
  const GpuLoopTables* t;
  uint64_t arg;

  __device__ uint64_t now_ns() { return globaltimer_ns(); }
  __device__ void sleep_ns(uint32_t ns) { __nanosleep(ns); }
  __device__ uint64_t error_arg() { return arg; }

  __device__ bool launch(cudaGraphExec_t g, uint64_t missing) {
    if (g == nullptr) {
      arg = missing;
      return false;
    }
    __threadfence();  // this thread's writes (error word reset, descriptor) before the unit's reads
    const cudaError_t e = cudaGraphLaunch(g, cudaStreamGraphFireAndForget);
    if (e != cudaSuccess) {
      arg = uint64_t(uint32_t(e));
      return false;
    }
    return true;
  }

  __device__ bool launch_begin(int slot, const BatchDesc& d) {
    if (BatchDesc* p = t->slot[slot].desc) *p = d;
    const cudaGraphExec_t g = d.meta_index < kMetaBuffers ? t->begin[slot * kMetaBuffers + d.meta_index] : nullptr;
    return launch(g, no_graph_arg(slot, kLaunchBegin, 0, 0, d.meta_index));
  }

  __device__ bool launch_unit(int slot, const BatchDesc& d, const Cursor& c, const LoopSlot& ls) {
    using G = graphs::UnitKind;
    switch (c.kind) {
      case UnitKind::Attn: {
        const bool dec = (d.flags & kBatchDecodeOnly) != 0 && t->decode.execs != nullptr;
        const graphs::DeviceGraphTable& tab = dec ? t->decode : t->main;
        const int b = bucket_for(d.n_rows, tab.shape.buckets);
        const cudaGraphExec_t g = b < 0 ? nullptr : tab.at(slot, G::Attn, c.layer, 0, b);
        return launch(g, no_graph_arg(slot, dec ? kLaunchDecodeAttn : kLaunchAttn, c.layer, 0, b));
      }
      case UnitKind::Expert: {
        const int id = ls.expert_id[c.expert];
        const int b = bucket_for(uint32_t(ls.expert_rows[c.expert]), t->main.shape.buckets);
        const cudaGraphExec_t g = b < 0 ? nullptr : t->main.at(slot, G::Expert, c.layer, id, b);
        return launch(g, no_graph_arg(slot, kLaunchExpert, c.layer, id, b));
      }
      case UnitKind::Head: {
        if (d.n_sample == 0) return true;  // no sampled row: nothing to run
        const int b = bucket_for(d.n_sample, t->main.shape.buckets);
        const cudaGraphExec_t g = b < 0 ? nullptr : t->main.at(slot, G::Head, 0, 0, b);
        return launch(g, no_graph_arg(slot, kLaunchHead, 0, 0, b));
      }
      case UnitKind::Done: break;
    }
    arg = no_graph_arg(slot, 0xf, c.layer, c.expert, 0);
    return false;
  }

  // The counts the layer's attn unit (router) wrote: experts with rows,
  // ascending; -1 when they are impossible.
  __device__ int expert_list(int slot, int layer, const BatchDesc& d, LoopSlot& ls) {
    const int32_t* counts = t->slot[slot].counts;
    const int units = t->units[layer];
    const int64_t rows = int64_t(d.n_rows);
    int64_t sum = 0;
    int n = 0;
    for (int e = 0; e < units; ++e) {
      const int32_t v = __ldcg(counts + e);
      if (v < 0 || int64_t(v) > rows) return -1;
      if (v == 0) continue;
      ls.expert_id[n] = int16_t(e);
      ls.expert_rows[n] = v;
      ++n;
      sum += v;
    }
    if (sum > rows * int64_t(t->fanout[layer])) return -1;
    return n;
  }

  __device__ int32_t take_error_word(int slot) {
    int32_t* p = t->slot[slot].error;
    const int32_t w = __ldcg(p);
    if (w != 0) *p = 0;  // launch() fences it before the slot's next unit
    return w;
  }

  __device__ int32_t sampled_token(int slot, int i) { return __ldcg(t->slot[slot].tokens_out + i); }
};

// One cycle per execution; one thread. Relaunches itself (tail launch: after
// this kernel and the unit it launched have finished) until the cycle says
// Exit. A failed relaunch is raised as a device error, so the host sees why
// the loop stopped.
__global__ void __launch_bounds__(1) device_loop_kernel(LoopState* state, const GpuLoopTables* tables) {
  LoopState& L = *state;
  GpuExec x{tables, 0};
  if (loop_cycle(L, x) != LoopAction::Relaunch) return;
  const cudaError_t e = cudaGraphLaunch(cudaGetCurrentGraphExec(), cudaStreamGraphTailLaunch);
  if (e != cudaSuccess) {
    device_raise_error(L.end, ErrorCode::GraphLaunch, kLaunchRelaunch | uint64_t(uint32_t(e)));
    L.exited = 1;
  }
}

}  // namespace

namespace detail {

// Captures the scheduler kernel into its graph (instantiated for device
// launch, uploaded on `stream`). A failed kernel launch inside the capture
// comes back in *launch_error (the graph is then not returned).
cudaGraphExec_t capture_device_loop(LoopState* state, const GpuLoopTables* tables, cudaStream_t stream,
                                    cudaError_t* launch_error) {
  cudaError_t err = cudaSuccess;
  cudaGraphExec_t exec = graphs::capture_for_device_launch(
      "device scheduler loop",
      [&](cudaStream_t cs) {
        device_loop_kernel<<<1, 1, 0, cs>>>(state, tables);
        err = cudaGetLastError();
      },
      stream);
  *launch_error = err;
  if (err != cudaSuccess) {
    cudaGraphExecDestroy(exec);
    return nullptr;
  }
  return exec;
}

}  // namespace detail
}  // namespace qllm::sched
