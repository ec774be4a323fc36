#include "graphs/capture.h"

#include "engine/common/error.h"
#include "profiling/nvtx.h"

#include <fmt/format.h>

namespace qllm::graphs {
namespace {

void check(cudaError_t e, const std::string& what, const char* call) {
  if (e != cudaSuccess) fail("{}: {} failed: {} ({})", what, call, cudaGetErrorName(e), cudaGetErrorString(e));
}

const char* node_kind(cudaGraphNodeType t) {
  switch (t) {
    case cudaGraphNodeTypeKernel: return "kernel node";
    case cudaGraphNodeTypeMemcpy: return "memcpy node";
    case cudaGraphNodeTypeMemset: return "memset node";
    case cudaGraphNodeTypeHost: return "host node";
    case cudaGraphNodeTypeGraph: return "child graph node";
    case cudaGraphNodeTypeEmpty: return "empty node";
    case cudaGraphNodeTypeWaitEvent: return "event wait node";
    case cudaGraphNodeTypeEventRecord: return "event record node";
    case cudaGraphNodeTypeExtSemaphoreSignal: return "external semaphore signal node";
    case cudaGraphNodeTypeExtSemaphoreWait: return "external semaphore wait node";
    case cudaGraphNodeTypeMemAlloc: return "memory allocation node";
    case cudaGraphNodeTypeMemFree: return "memory free node";
    default: return "conditional or unknown node";
  }
}

}  // namespace

std::vector<std::string> disallowed_nodes(cudaGraph_t graph) {
  size_t n = 0;
  check(cudaGraphGetNodes(graph, nullptr, &n), "graph", "cudaGraphGetNodes");
  std::vector<cudaGraphNode_t> nodes(n);
  if (n) check(cudaGraphGetNodes(graph, nodes.data(), &n), "graph", "cudaGraphGetNodes");
  std::vector<std::string> bad;
  for (auto node : nodes) {
    cudaGraphNodeType t;
    check(cudaGraphNodeGetType(node, &t), "graph", "cudaGraphNodeGetType");
    // Device launch allows kernel, memcpy, memset and child graph nodes;
    // empty nodes (joins of captured forks) are left to instantiation.
    if (t == cudaGraphNodeTypeGraph) {
      cudaGraph_t child;
      check(cudaGraphChildGraphNodeGetGraph(node, &child), "graph", "cudaGraphChildGraphNodeGetGraph");
      for (auto& s : disallowed_nodes(child)) bad.push_back("in a child graph: " + s);
    } else if (t != cudaGraphNodeTypeKernel && t != cudaGraphNodeTypeMemcpy && t != cudaGraphNodeTypeMemset &&
               t != cudaGraphNodeTypeEmpty) {
      bad.emplace_back(node_kind(t));
    }
  }
  return bad;
}

cudaGraphExec_t capture_for_device_launch(const std::string& what,
                                          const std::function<void(cudaStream_t)>& body,
                                          cudaStream_t stream) {
  prof::Range range(("capture " + what).c_str());
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), what, "cudaStreamBeginCapture");
  try {
    body(stream);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);  // leave the stream usable
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  check(cudaStreamEndCapture(stream, &graph), what, "cudaStreamEndCapture");
  struct Destroy {
    cudaGraph_t g;
    ~Destroy() { cudaGraphDestroy(g); }
  } destroy{graph};
  const auto bad = disallowed_nodes(graph);
  if (!bad.empty()) {
    std::string list;
    for (const auto& b : bad) list += (list.empty() ? "" : ", ") + b;
    fail("{}: the captured graph cannot be launched from the device: it holds {} (only kernel, memcpy, "
         "memset and child graph nodes are allowed)", what, list);
  }
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagDeviceLaunch), what,
        "cudaGraphInstantiateWithFlags(DeviceLaunch)");
  check(cudaGraphUpload(exec, stream), what, "cudaGraphUpload");
  return exec;
}

GraphTable::GraphTable(TableShape shape) : shape_(shape), execs_(size_t(shape.size()), nullptr) {
  QLLM_CHECK_MSG(shape.slots > 0 && shape.layers > 0 && shape.buckets > 0 && shape.experts >= 0,
                 "graph table shape {} slots, {} layers, {} experts, {} buckets", shape.slots, shape.layers,
                 shape.experts, shape.buckets);
}

GraphTable::~GraphTable() {
  for (auto e : execs_)
    if (e) cudaGraphExecDestroy(e);
  if (d_execs_) cudaFree(d_execs_);
}

void GraphTable::set(int slot, UnitKind kind, int layer, int expert, int bucket, cudaGraphExec_t exec) {
  const int64_t i = shape_.index(slot, kind, layer, expert, bucket);
  QLLM_CHECK_MSG(i >= 0, "graph table: no entry for slot {} kind {} layer {} expert {} bucket {}", slot,
                 int(kind), layer, expert, bucket);
  QLLM_CHECK_MSG(!execs_[size_t(i)], "graph table: entry slot {} kind {} layer {} expert {} bucket {} set twice",
                 slot, int(kind), layer, expert, bucket);
  execs_[size_t(i)] = exec;
}

cudaGraphExec_t GraphTable::get(int slot, UnitKind kind, int layer, int expert, int bucket) const {
  const int64_t i = shape_.index(slot, kind, layer, expert, bucket);
  return i < 0 ? nullptr : execs_[size_t(i)];
}

int64_t GraphTable::captured() const {
  int64_t n = 0;
  for (auto e : execs_) n += e != nullptr;
  return n;
}

DeviceGraphTable GraphTable::upload(cudaStream_t stream) {
  const size_t bytes = execs_.size() * sizeof(cudaGraphExec_t);
  if (!d_execs_) check(cudaMalloc(&d_execs_, bytes), "graph table", "cudaMalloc");
  check(cudaMemcpyAsync(d_execs_, execs_.data(), bytes, cudaMemcpyHostToDevice, stream), "graph table",
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream), "graph table", "cudaStreamSynchronize");
  return {shape_, d_execs_};
}

}  // namespace qllm::graphs
