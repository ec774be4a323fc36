// The policy compiled by nvcc and run on the device agrees with the host build
// on random slot tables (the device loop and the host dispatcher must make the
// same decisions).
#include "device_scheduler/policy.h"
#include "kernels/cuda_check.h"
#include "tests/gpu_test_util.h"

#include <random>
#include <vector>

using namespace qllm::sched;

namespace {

__global__ void pick_kernel(const SlotTable* tables, const uint64_t* now, PolicyParams p, int n,
                            int* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = pick_slot(tables[i], now[i], p);
}

}  // namespace

TEST(GpuPolicy, DeviceDecisionsEqualHost) {
  QLLM_REQUIRE_GPU();
  std::mt19937_64 rng(42);
  const int n = 4096;
  std::vector<SlotTable> tables(n);
  std::vector<uint64_t> now(n);
  for (int i = 0; i < n; ++i) {
    auto& t = tables[i];
    t.n_slots = 1 + int(rng() % kMaxSlots);
    t.last = int(rng() % (t.n_slots + 1)) - 1;
    for (int s = 0; s < t.n_slots; ++s) {
      auto& st = t.slot[s];
      st.active = uint8_t(rng() % 2);
      st.started = uint8_t(rng() % 2);
      st.cls = (rng() % 3 == 0) ? PriorityClass::LS : PriorityClass::BE;
      st.cursor.kind = UnitKind(rng() % 3);
      st.cursor.layer = int16_t(rng() % 8);
      st.published_ns = rng() % 1000;
    }
    now[i] = 500 + rng() % 1000;
  }
  SlotTable* d_tables = nullptr;
  uint64_t* d_now = nullptr;
  int* d_out = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&d_tables, sizeof(SlotTable) * n));
  QLLM_CUDA_CHECK(cudaMalloc(&d_now, sizeof(uint64_t) * n));
  QLLM_CUDA_CHECK(cudaMalloc(&d_out, sizeof(int) * n));
  QLLM_CUDA_CHECK(cudaMemcpy(d_tables, tables.data(), sizeof(SlotTable) * n, cudaMemcpyHostToDevice));
  QLLM_CUDA_CHECK(cudaMemcpy(d_now, now.data(), sizeof(uint64_t) * n, cudaMemcpyHostToDevice));
  for (Policy pol : {Policy::FcfsIteration, Policy::PriorityLayer, Policy::PriorityExpert}) {
    PolicyParams p;
    p.policy = pol;
    p.be_max_wait_ns = 700;
    QLLM_CUDA_CHECK(cudaMemset(d_out, 0x7f, sizeof(int) * n));  // poison
    pick_kernel<<<(n + 255) / 256, 256>>>(d_tables, d_now, p, n, d_out);
    QLLM_CUDA_CHECK_LAUNCH();
    std::vector<int> got(n);
    QLLM_CUDA_CHECK(cudaMemcpy(got.data(), d_out, sizeof(int) * n, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(got[i], pick_slot(tables[i], now[i], p)) << "table " << i << " policy " << int(pol);
  }
  cudaFree(d_tables);
  cudaFree(d_now);
  cudaFree(d_out);
}
