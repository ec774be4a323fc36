// Device graph launch end to end: unit graphs captured with
// capture_for_device_launch and stored in a GraphTable are launched by a
// scheduler-like kernel that itself runs in a device-launchable graph, as the
// device loop will; a host node in a capture is refused with a message.
#include "graphs/capture.h"
#include "tests/gpu_test_util.h"

#include <gtest/gtest.h>

#include <vector>

using namespace qllm::graphs;

namespace {

__global__ void add_kernel(int* out, int v) { atomicAdd(out, v); }

// Launches, for each i < n, the graph table entry (0, Expert, 0, i, 0).
__global__ void scheduler_kernel(DeviceGraphTable table, int n, int* launched) {
  if (threadIdx.x != 0) return;
  for (int i = 0; i < n; ++i) {
    cudaGraphExec_t g = table.at(0, UnitKind::Expert, 0, i, 0);
    if (g && cudaGraphLaunch(g, cudaStreamGraphFireAndForget) == cudaSuccess) ++*launched;
  }
}

void host_fn(void*) {}

}  // namespace

TEST(GraphsDeviceLaunch, SchedulerKernelLaunchesUnitGraphsFromTheTable) {
  QLLM_REQUIRE_GPU();
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  int *d_sum = nullptr, *d_launched = nullptr;
  ASSERT_EQ(cudaMalloc(&d_sum, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_launched, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_sum, 0, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_launched, 0, sizeof(int)), cudaSuccess);
  const int n = 4;
  GraphTable table({1, 1, n, 1});
  for (int i = 0; i < n; ++i)
    table.set(0, UnitKind::Expert, 0, i, 0,
              capture_for_device_launch("unit " + std::to_string(i),
                                        [&](cudaStream_t st) { add_kernel<<<1, 1, 0, st>>>(d_sum, 1 << i); }, s));
  EXPECT_EQ(table.captured(), n);
  const DeviceGraphTable dt = table.upload(s);
  cudaGraphExec_t sched = capture_for_device_launch(
      "scheduler", [&](cudaStream_t st) { scheduler_kernel<<<1, 32, 0, st>>>(dt, n, d_launched); }, s);
  for (int rep = 0; rep < 3; ++rep) ASSERT_EQ(cudaGraphLaunch(sched, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  int sum = 0, launched = 0;
  cudaMemcpy(&sum, d_sum, sizeof(int), cudaMemcpyDeviceToHost);
  cudaMemcpy(&launched, d_launched, sizeof(int), cudaMemcpyDeviceToHost);
  EXPECT_EQ(launched, 3 * n);
  EXPECT_EQ(sum, 3 * ((1 << n) - 1));
  cudaGraphExecDestroy(sched);
  cudaFree(d_sum);
  cudaFree(d_launched);
  cudaStreamDestroy(s);
}

TEST(GraphsDeviceLaunch, HostNodesAreRefusedWithAMessage) {
  QLLM_REQUIRE_GPU();
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  std::string msg;
  try {
    capture_for_device_launch("bad unit", [&](cudaStream_t st) { cudaLaunchHostFunc(st, host_fn, nullptr); }, s);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("bad unit"), std::string::npos) << msg;
  EXPECT_NE(msg.find("host node"), std::string::npos) << msg;
  cudaStreamDestroy(s);
}
