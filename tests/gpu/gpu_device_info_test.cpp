// The device query works on every machine: with a GPU it describes it, without
// one it says why and the GPU tests skip.
#include "kernels/device_info.h"
#include "tests/gpu_test_util.h"

TEST(DeviceInfo, QueryNeverFails) {
  const auto r = qllm::cuda::query_devices();
  if (r.devices.empty()) {
    EXPECT_FALSE(r.why_none.empty());
  } else {
    EXPECT_TRUE(r.why_none.empty());
  }
}

TEST(DeviceInfo, DescribesEachDevice) {
  QLLM_REQUIRE_GPU();
  const auto r = qllm::cuda::query_devices();
  for (const auto& d : r.devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GE(d.cc_major, 7);
    EXPECT_GT(d.total_mem, size_t(1) << 30);
    EXPECT_GT(d.sm_count, 0);
  }
}
