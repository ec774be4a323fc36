// The control-block protocol across PCIe: a one-block kernel takes batches
// from a block in cudaHostAllocMapped memory while a host thread publishes
// them, answers each with a timing and a token record through the output ring
// (which a second host thread drains), reads cancellations, and stops on the
// shutdown handshake. The kernel gives up on its own after a time limit (as an
// Internal device error), so a protocol bug fails the test instead of hanging.
#include "device_scheduler/control_block.h"
#include "kernels/cuda_check.h"
#include "tests/gpu_test_util.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace qllm::sched;

namespace {

constexpr int kSlots = 2;

QLLM_HD inline int32_t desc_check(const BatchDesc& d) {
  const uint64_t x = d.pass_id * 1000003u + d.n_rows * 7919u + d.n_seqs * 131u + d.n_sample * 17u +
                     d.meta_index * 3u + d.bucket + uint64_t(d.cls);
  return int32_t(x % 2147483647u);
}

BatchDesc make_desc(uint64_t pass_id) {
  BatchDesc d{};
  d.pass_id = pass_id;
  d.n_rows = uint32_t(1 + pass_id % 97);
  d.n_seqs = uint16_t(1 + pass_id % d.n_rows);
  d.n_sample = uint16_t(pass_id % (d.n_seqs + 1u));
  d.meta_index = uint16_t(pass_id % 2);
  d.bucket = uint16_t(pass_id % 5);
  d.cls = pass_id % 3 == 0 ? PriorityClass::LS : PriorityClass::BE;
  return d;
}

struct Tally {
  uint64_t cancels;
  uint64_t cancel_sum;
  uint64_t timings_made;
};

__device__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Thread 0 is the scheduler; the DeviceEnd is loaded from device memory and
// written back at exit, as the real loop does across its relaunches.
__global__ void consumer_kernel(DeviceEnd* end, Tally* tally, uint64_t limit_ns) {
  if (threadIdx.x != 0) return;
  DeviceEnd d = *end;
  Tally t = *tally;
  OutputRecord pending{};
  bool has_pending = false;
  const uint64_t t0 = globaltimer_ns();
  if (device_check_header(d)) {
    for (;;) {
      if (globaltimer_ns() - t0 > limit_ns) {
        device_raise_error(d, ErrorCode::Internal, __LINE__);
        break;
      }
      if (!has_pending && device_shutdown_requested(d)) {
        device_ack_shutdown(d);
        break;
      }
      device_poll_cancels(d, [&](uint64_t id) {
        t.cancels += 1;
        t.cancel_sum += id;
      });
      if (has_pending) {  // a token waits for room: retry, take nothing new
        if (device_push_output(d, pending) == PushResult::Pushed) has_pending = false;
        else __nanosleep(200);
        continue;
      }
      bool took = false;
      for (int s = 0; s < int(d.n_slots) && !has_pending; ++s) {
        BatchDesc desc;
        if (!device_poll_batch(d, s, &desc)) continue;
        took = true;
        OutputRecord r{};
        r.pass_id = desc.pass_id;
        r.slot = uint8_t(s);
        r.kind = RecordKind::UnitTiming;
        r.t_start_ns = globaltimer_ns();
        r.t_end_ns = globaltimer_ns();
        device_push_output(d, r);
        t.timings_made += 1;
        r.kind = RecordKind::Token;
        r.row = desc.n_rows;
        r.token = desc_check(desc);
        if (device_push_output(d, r) != PushResult::Pushed) {
          pending = r;
          has_pending = true;
        }
      }
      if (!took) __nanosleep(500);
    }
  }
  *end = d;
  *tally = t;
}

}  // namespace

TEST(GpuControlBlock, KernelConsumesWhatTheHostPublishes) {
  QLLM_REQUIRE_GPU();
  constexpr uint64_t kPerSlot = 2000;
  constexpr uint64_t kCancels = 300;
  ControlBlockConfig cfg;
  cfg.n_slots = kSlots;
  cfg.out_capacity = 64;
  cfg.out_timing_reserve = 16;
  const size_t bytes = control_block_bytes(cfg.out_capacity);
  void* mem = nullptr;
  QLLM_CUDA_CHECK(cudaHostAlloc(&mem, bytes, cudaHostAllocMapped));
  ControlBlock* cb = control_block_init(mem, bytes, cfg);
  void* dev_view = nullptr;
  QLLM_CUDA_CHECK(cudaHostGetDevicePointer(&dev_view, mem, 0));
  const DeviceEnd de = make_device_end(static_cast<ControlBlock*>(dev_view), *cb);
  DeviceEnd* d_end = nullptr;
  Tally* d_tally = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&d_end, sizeof(DeviceEnd)));
  QLLM_CUDA_CHECK(cudaMalloc(&d_tally, sizeof(Tally)));
  QLLM_CUDA_CHECK(cudaMemcpy(d_end, &de, sizeof de, cudaMemcpyHostToDevice));
  QLLM_CUDA_CHECK(cudaMemset(d_tally, 0, sizeof(Tally)));
  cudaStream_t stream;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  consumer_kernel<<<1, 32, 0, stream>>>(d_end, d_tally, 20'000'000'000ull);
  QLLM_CUDA_CHECK_LAUNCH();

  std::atomic<bool> done{false};
  std::vector<OutputRecord> records;
  std::thread drain([&] {
    DrainEnd r = make_drain_end(cb);
    auto keep = [&](const OutputRecord& rec) { records.push_back(rec); };
    while (!done.load()) {
      if (host_drain_output(r, keep) == 0) std::this_thread::yield();
    }
    host_drain_output(r, keep);
  });

  HostEnd h = make_host_end(cb);
  std::string failure;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  auto retry = [&](auto&& attempt) {
    while (!attempt()) {
      if (host_check_error(*cb) || std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  };
  uint64_t cancels_sent = 0, cancel_sum = 0;
  for (uint64_t k = 0; k < kPerSlot && failure.empty(); ++k) {
    for (int s = 0; s < kSlots; ++s) {
      const uint64_t id = 1 + k * kSlots + uint64_t(s);
      if (!retry([&] { return host_publish_batch(h, s, make_desc(id)); })) {
        failure = "publish of pass " + std::to_string(id) + " failed";
        break;
      }
    }
    if (cancels_sent < kCancels && k % 3 == 0) {
      const uint64_t id = 1 + cancels_sent * 11;
      if (!retry([&] { return host_request_cancel(h, id); })) failure = "cancel ring stuck";
      cancels_sent += 1;
      cancel_sum += id;
    }
  }
  host_request_shutdown(h);
  const bool acked = retry([&] { return host_shutdown_acked(h); });
  QLLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  done.store(true);
  drain.join();

  EXPECT_EQ(failure, "");
  EXPECT_TRUE(acked);
  const DeviceError err = host_check_error(*cb);
  EXPECT_FALSE(err) << format_device_error(err);
  Tally tally{};
  QLLM_CUDA_CHECK(cudaMemcpy(&tally, d_tally, sizeof tally, cudaMemcpyDeviceToHost));
  EXPECT_EQ(tally.cancels, cancels_sent);
  EXPECT_EQ(tally.cancel_sum, cancel_sum);
  uint64_t next[kSlots] = {};
  uint64_t timings = 0;
  for (const OutputRecord& rec : records) {
    ASSERT_LT(rec.slot, kSlots);
    if (rec.kind == RecordKind::UnitTiming) {
      ++timings;
      continue;
    }
    ASSERT_EQ(rec.kind, RecordKind::Token);
    const uint64_t want = 1 + next[rec.slot] * kSlots + rec.slot;
    ASSERT_EQ(rec.pass_id, want) << "slot " << int(rec.slot);
    ASSERT_EQ(rec.token, desc_check(make_desc(want))) << "torn descriptor, pass " << want;
    ++next[rec.slot];
  }
  for (int s = 0; s < kSlots; ++s) EXPECT_EQ(next[s], kPerSlot) << "slot " << s;
  EXPECT_EQ(timings + host_dropped_timings(*cb), tally.timings_made);
  EXPECT_EQ(tally.timings_made, kSlots * kPerSlot);

  QLLM_CUDA_CHECK(cudaStreamDestroy(stream));
  QLLM_CUDA_CHECK(cudaFree(d_end));
  QLLM_CUDA_CHECK(cudaFree(d_tally));
  QLLM_CUDA_CHECK(cudaFreeHost(mem));
}

// A device error raised by the kernel reaches the host with its message.
__global__ void raise_kernel(DeviceEnd* end) {
  DeviceEnd d = *end;
  device_raise_error(d, ErrorCode::BadExpertCount, 1234);
  device_raise_error(d, ErrorCode::Internal, 1);
  *end = d;
}

TEST(GpuControlBlock, DeviceErrorReachesHost) {
  QLLM_REQUIRE_GPU();
  ControlBlockConfig cfg;
  cfg.out_capacity = 8;
  cfg.out_timing_reserve = 2;
  const size_t bytes = control_block_bytes(cfg.out_capacity);
  void* mem = nullptr;
  QLLM_CUDA_CHECK(cudaHostAlloc(&mem, bytes, cudaHostAllocMapped));
  ControlBlock* cb = control_block_init(mem, bytes, cfg);
  void* dev_view = nullptr;
  QLLM_CUDA_CHECK(cudaHostGetDevicePointer(&dev_view, mem, 0));
  const DeviceEnd de = make_device_end(static_cast<ControlBlock*>(dev_view), *cb);
  DeviceEnd* d_end = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&d_end, sizeof(DeviceEnd)));
  QLLM_CUDA_CHECK(cudaMemcpy(d_end, &de, sizeof de, cudaMemcpyHostToDevice));
  raise_kernel<<<1, 1>>>(d_end);
  QLLM_CUDA_CHECK_LAUNCH();
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  const DeviceError e = host_check_error(*cb);
  EXPECT_EQ(e.code, ErrorCode::BadExpertCount);
  EXPECT_EQ(e.arg, 1234u);
  EXPECT_NE(format_device_error(e).find("expert count"), std::string::npos);
  QLLM_CUDA_CHECK(cudaFree(d_end));
  QLLM_CUDA_CHECK(cudaFreeHost(mem));
}
