// Capturing work-unit graphs for device launch (DESIGN.md, "Facts about
// device graph launch"): stream capture of a body that only enqueues work,
// a check that every node is of a kind a device-launched graph may hold
// (kernel, memcpy, memset, child graph), instantiation with
// cudaGraphInstantiateFlagDeviceLaunch, and upload.
#pragma once

#include "graphs/graph_table.h"

#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qllm::graphs {

// Node kinds of a captured graph that device launch refuses, as text
// ("host node", "event record node", ...); empty when all are allowed.
std::vector<std::string> disallowed_nodes(cudaGraph_t graph);

// Captures `body(stream)` (thread-local capture mode, so another thread's
// work is not swept in), checks its nodes, instantiates it for device launch
// and uploads it on `stream`. Throws qllm::Error naming `what` and the
// offending node kinds or the CUDA error.
cudaGraphExec_t capture_for_device_launch(const std::string& what,
                                          const std::function<void(cudaStream_t)>& body,
                                          cudaStream_t stream);

// Owns the executable graphs of a table and their device-side index.
class GraphTable {
 public:
  explicit GraphTable(TableShape shape);
  ~GraphTable();
  GraphTable(const GraphTable&) = delete;
  GraphTable& operator=(const GraphTable&) = delete;

  const TableShape& shape() const { return shape_; }
  // Stores a graph (the table owns it from then on). Throws on a bad index or
  // an entry already set.
  void set(int slot, UnitKind kind, int layer, int expert, int bucket, cudaGraphExec_t exec);
  cudaGraphExec_t get(int slot, UnitKind kind, int layer, int expert, int bucket) const;
  int64_t captured() const;  // entries set

  // Copies the handles to device memory (after every set) and returns the
  // view the device scheduler reads.
  DeviceGraphTable upload(cudaStream_t stream);

 private:
  TableShape shape_;
  std::vector<cudaGraphExec_t> execs_;
  cudaGraphExec_t* d_execs_ = nullptr;
};

}  // namespace qllm::graphs
