// The fixture of the device loop's GPU tests (gpu_device_loop_workload_test,
// gpu_device_loop_stop_test): the device loop (device_scheduler/device_loop.h)
// over fake unit graphs (no model): small kernels captured for device launch
// into the graph tables of 2 slots, 2 layers (layer 0 MoE: 4 experts, top-2;
// layer 1 dense), 4 buckets. The loop writes each pass's descriptor into the
// slot's device buffer before its begin unit, and the fake units read it there:
//   begin   logs itself and which of the slot's two begin graphs (metadata
//           buffers) ran: the loop must pick the descriptor's meta_index
//   attn    writes the layer's expert counts, a function of the pass id and
//           the layer (fake_count); for the dense layer it also writes junk
//           past counts[0], which the loop must not read; pass kBadDataPass
//           sets the error word
//   expert  logs (slot, layer, expert id, bucket)
//   head    writes tokens_out[i] = fake_token(pass, i)
// Every unit appends to a device log and can be slowed down (a spin time in
// mapped host memory), so a pass lasts long enough to be overtaken,
// cancelled or abandoned. The host side runs the real protocol
// (host_publish_batch, host_drain_output, cancellations, shutdown) on a
// control block in cudaHostAllocMapped memory, always with deadlines: a
// broken loop fails a test, it never hangs it.
//
//   make_desc, workload_desc, long_pass   a pass descriptor; the workload's
//                        passes; a pass with at least n units
//   Rig                  everything one test needs: the control block, the
//                        fake graphs, the slot buffers, the loop, the host's
//                        ends of the protocol (publish, drain, shutdown)
//   expect_pass          what a pass should run: its device log entries and
//                        UnitTiming cursors
//   check_pass_records   a pass's output records against expect_pass
//   check_pass_log       a pass's device log entries against expect_pass
//   REQUIRE_DEVICE_LAUNCH()  skips a test where the GPU cannot launch graphs
//                        from the device
//
// CUDA only (kernels and <<<>>> launches). The kernels and their device
// helpers have internal linkage: every test file that includes this header
// is an executable of its own.
#pragma once

#include "device_scheduler/device_loop.h"
#include "graphs/capture.h"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "tests/gpu_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#define REQUIRE_DEVICE_LAUNCH()                                                 \
  do {                                                                          \
    std::string why_;                                                           \
    if (!::qllm::sched::DeviceLoop::supported(0, &why_)) GTEST_SKIP() << why_;  \
  } while (0)

namespace qllm::test::devloop {

using namespace qllm::sched;

constexpr int kSlots = 2;
constexpr int kLayers = 2;
constexpr int kExperts = 4;  // layer 0; layer 1 is dense (one unit)
constexpr int kBuckets = 4;  // up to 8 rows
constexpr int kTopK = 2;
constexpr int kUnits[kLayers] = {kExperts, 1};
constexpr int kFanout[kLayers] = {kTopK, 1};
constexpr uint32_t kLogCap = 1u << 16;

constexpr uint64_t kBadDataPass = 41;        // its layer-0 attn unit sets the error word
constexpr uint64_t kBadCountPass = 1000001;  // layer 1: a count above n_rows
constexpr uint64_t kBadSumPass = 1000003;    // layer 0: more rows in all than n_rows * top_k

// Rows the attn unit of `layer` sends to expert e.
QLLM_HD inline int32_t fake_count(uint64_t pass, int layer, int e, uint32_t n_rows) {
  if (layer == 1) return e == 0 ? int32_t(n_rows) + (pass == kBadCountPass ? 1 : 0) : 999;
  if (pass == kBadSumPass) return int32_t(n_rows);
  const uint64_t h = (pass * 2654435761ull + uint64_t(e) * 40503ull + 977ull) >> 5;
  return int32_t(h % (n_rows / 2 + 1));  // 4 experts * n/2 <= n * top_k
}

QLLM_HD inline int32_t fake_token(uint64_t pass, uint32_t row) {
  return int32_t((pass * 1009ull + row * 7ull + 13ull) % 2000000011ull);
}

struct LogEntry {
  uint64_t pass;
  int32_t slot, kind, layer, expert, bucket, reserved;
};

struct DevLog {
  uint32_t n;
  uint32_t reserved;
  LogEntry e[kLogCap];
};

namespace {  // the fake units

__device__ uint64_t gtimer() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ void spin(const volatile uint32_t* knob) {
  const uint32_t ns = *knob;
  if (ns == 0) return;
  const uint64_t t0 = gtimer();
  while (gtimer() - t0 < ns) __nanosleep(1000);
}

__device__ void log_unit(DevLog* log, uint64_t pass, int slot, int kind, int layer, int expert, int bucket) {
  const uint32_t i = atomicAdd(&log->n, 1u);
  if (i < kLogCap) log->e[i] = LogEntry{pass, slot, kind, layer, expert, bucket, 0};
}

__global__ void fake_begin(const BatchDesc* desc, int slot, int meta, DevLog* log) {
  log_unit(log, desc->pass_id, slot, int(kLaunchBegin), -1, -1, meta);
}

__global__ void fake_attn(const BatchDesc* desc, int slot, int layer, int bucket, int decode, int32_t* counts,
                          int32_t* error, DevLog* log, const volatile uint32_t* knob) {
  spin(knob);
  const BatchDesc d = *desc;
  for (int e = 0; e < kExperts; ++e) counts[e] = fake_count(d.pass_id, layer, e, d.n_rows);
  if (d.pass_id == kBadDataPass && layer == 0) *error = 1;
  log_unit(log, d.pass_id, slot, int(decode ? kLaunchDecodeAttn : kLaunchAttn), layer, -1, bucket);
}

__global__ void fake_expert(const BatchDesc* desc, int slot, int layer, int expert, int bucket, DevLog* log,
                            const volatile uint32_t* knob) {
  spin(knob);
  log_unit(log, desc->pass_id, slot, int(kLaunchExpert), layer, expert, bucket);
}

__global__ void fake_head(const BatchDesc* desc, int slot, int bucket, int32_t* tokens, DevLog* log,
                          const volatile uint32_t* knob) {
  spin(knob);
  const BatchDesc d = *desc;
  for (uint32_t i = 0; i < d.n_sample && i < (1u << bucket); ++i) tokens[i] = fake_token(d.pass_id, i);
  log_unit(log, d.pass_id, slot, int(kLaunchHead), -1, -1, bucket);
}

}  // namespace

inline BatchDesc make_desc(uint64_t id, uint32_t rows, uint16_t seqs, uint16_t sample, PriorityClass cls) {
  BatchDesc d{};
  d.pass_id = id;
  d.n_rows = rows;
  d.n_seqs = seqs;
  d.n_sample = sample;
  d.meta_index = uint16_t(id % kMetaBuffers);  // both begin graphs of each slot get used
  d.cls = cls;
  d.flags = seqs == rows ? kBatchDecodeOnly : 0;
  return d;
}

// The workload's passes: varied rows, sequences, samples, classes.
inline BatchDesc workload_desc(uint64_t id) {
  const uint32_t rows = 1 + uint32_t(id * 5 % 8);
  const auto seqs = uint16_t(1 + (id / 3) % rows);
  const auto sample = uint16_t((id / 7) % (seqs + 1u));
  return make_desc(id, rows, seqs, sample, id % 3 == 0 ? PriorityClass::LS : PriorityClass::BE);
}

// What a pass should run: the device log's entries and the UnitTiming cursors.
struct Expected {
  std::vector<LogEntry> log;
  std::vector<Cursor> units;
  size_t launches = 0;  // units the loop launches (begin included; a head with no sample launches nothing)
};

inline Expected expect_pass(const BatchDesc& d, int slot) {
  Expected x;
  const uint64_t p = d.pass_id;
  x.log.push_back({p, slot, int32_t(kLaunchBegin), -1, -1, int32_t(d.meta_index), 0});
  const bool decode = d.flags & kBatchDecodeOnly;
  for (int l = 0; l < kLayers; ++l) {
    x.log.push_back({p, slot, int32_t(decode ? kLaunchDecodeAttn : kLaunchAttn), l, -1,
                     graphs::bucket_of(int(d.n_rows), kBuckets), 0});
    x.units.push_back({UnitKind::Attn, int16_t(l), 0});
    if (p == kBadDataPass) break;
    int16_t k = 0;
    for (int e = 0; e < kUnits[l]; ++e) {
      const int32_t c = fake_count(p, l, e, d.n_rows);
      if (c == 0) continue;
      x.log.push_back({p, slot, int32_t(kLaunchExpert), l, e, graphs::bucket_of(c, kBuckets), 0});
      x.units.push_back({UnitKind::Expert, int16_t(l), k++});
    }
  }
  if (p != kBadDataPass) {
    x.units.push_back({UnitKind::Head, 0, 0});
    if (d.n_sample > 0)
      x.log.push_back({p, slot, int32_t(kLaunchHead), -1, -1, graphs::bucket_of(d.n_sample, kBuckets), 0});
  }
  x.launches = x.units.size() + 1;
  return x;
}

// A pass id >= from whose pass (rows 8) runs at least `units` units.
inline uint64_t long_pass(uint64_t from, size_t units) {
  for (uint64_t id = from;; ++id)
    if (expect_pass(make_desc(id, 8, 1, 1, PriorityClass::BE), 0).units.size() >= units) return id;
}

inline bool same(const LogEntry& a, const LogEntry& b) {
  return a.pass == b.pass && a.slot == b.slot && a.kind == b.kind && a.layer == b.layer && a.expert == b.expert &&
         a.bucket == b.bucket;
}

inline std::string str(const LogEntry& e) {
  return "{pass " + std::to_string(e.pass) + " slot " + std::to_string(e.slot) + " kind " + std::to_string(e.kind) +
         " layer " + std::to_string(e.layer) + " expert " + std::to_string(e.expert) + " bucket " +
         std::to_string(e.bucket) + "}";
}

// Everything one test needs: the control block, the fake unit graphs, the
// slot buffers, the loop, and the host's ends of the protocol (one thread
// publishes and drains). Setup failures abort (QLLM_CUDA_CHECK).
struct Rig {
  cudaStream_t stream = nullptr;
  void* cb_mem = nullptr;
  ControlBlock* cb = nullptr;
  uint32_t* knob = nullptr;  // mapped host memory: the time every unit spins, ns
  uint32_t* d_knob = nullptr;
  DevLog* d_log = nullptr;
  int32_t* d_counts[kSlots] = {};
  int32_t* d_error[kSlots] = {};
  int32_t* d_tokens[kSlots] = {};
  BatchDesc* d_desc[kSlots] = {};
  std::unique_ptr<graphs::GraphTable> main, decode;
  cudaGraphExec_t begin[kSlots * kMetaBuffers] = {};  // [slot][metadata buffer]
  cudaGraphExec_t* d_begin = nullptr;
  GpuLoopTables tables;
  std::unique_ptr<DeviceLoop> loop;
  HostEnd h;
  DrainEnd drain_end;

  std::vector<OutputRecord> records;
  std::map<uint64_t, int> timings, dones;  // per pass id
  size_t n_done = 0;

  explicit Rig(Policy policy, uint32_t out_capacity = 16384, uint32_t timing_reserve = 1024) {
    QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    ControlBlockConfig cc;
    cc.n_slots = kSlots;
    cc.out_capacity = out_capacity;
    cc.out_timing_reserve = timing_reserve;
    const size_t bytes = control_block_bytes(out_capacity);
    QLLM_CUDA_CHECK(cudaHostAlloc(&cb_mem, bytes, cudaHostAllocMapped));
    cb = control_block_init(cb_mem, bytes, cc);
    QLLM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&knob), sizeof(uint32_t), cudaHostAllocMapped));
    *knob = 0;
    QLLM_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&d_knob), knob, 0));
    QLLM_CUDA_CHECK(cudaMalloc(&d_log, sizeof(DevLog)));
    QLLM_CUDA_CHECK(cudaMemset(d_log, 0, sizeof(DevLog)));
    for (int s = 0; s < kSlots; ++s) {
      QLLM_CUDA_CHECK(cudaMalloc(&d_counts[s], kExperts * sizeof(int32_t)));
      QLLM_CUDA_CHECK(cudaMalloc(&d_error[s], sizeof(int32_t)));
      QLLM_CUDA_CHECK(cudaMalloc(&d_tokens[s], (1u << kBuckets) * sizeof(int32_t)));
      QLLM_CUDA_CHECK(cudaMalloc(&d_desc[s], sizeof(BatchDesc)));
      QLLM_CUDA_CHECK(cudaMemset(d_counts[s], 0, kExperts * sizeof(int32_t)));
      QLLM_CUDA_CHECK(cudaMemset(d_error[s], 0, sizeof(int32_t)));
      QLLM_CUDA_CHECK(cudaMemset(d_tokens[s], 0, (1u << kBuckets) * sizeof(int32_t)));
      QLLM_CUDA_CHECK(cudaMemset(d_desc[s], 0, sizeof(BatchDesc)));
    }
    capture();
    QLLM_CUDA_CHECK(cudaMalloc(&d_begin, sizeof begin));
    QLLM_CUDA_CHECK(cudaMemcpy(d_begin, begin, sizeof begin, cudaMemcpyHostToDevice));
    tables.main = main->upload(stream);
    tables.decode = decode->upload(stream);
    tables.begin = d_begin;
    for (int s = 0; s < kSlots; ++s) tables.slot[s] = {d_counts[s], d_error[s], d_tokens[s], d_desc[s]};
    for (int l = 0; l < kLayers; ++l) {
      tables.units[l] = kUnits[l];
      tables.fanout[l] = kFanout[l];
    }
    QLLM_CUDA_CHECK(cudaDeviceSynchronize());
    LoopConfig cfg;
    cfg.layers = kLayers;
    cfg.policy.policy = policy;
    loop = std::make_unique<DeviceLoop>(cb, cfg, tables, stream);
    h = make_host_end(cb);
    drain_end = make_drain_end(cb);
  }

  void capture() {
    using graphs::UnitKind;
    main = std::make_unique<graphs::GraphTable>(graphs::TableShape{kSlots, kLayers, kExperts, kBuckets});
    decode = std::make_unique<graphs::GraphTable>(graphs::TableShape{kSlots, kLayers, 0, kBuckets});
    auto cap = [&](const std::string& what, const std::function<void(cudaStream_t)>& body) {
      return graphs::capture_for_device_launch(what, body, stream);
    };
    DevLog* log = d_log;
    const uint32_t* k = d_knob;
    for (int s = 0; s < kSlots; ++s) {
      const BatchDesc* desc = d_desc[s];
      int32_t* counts = d_counts[s];
      int32_t* error = d_error[s];
      int32_t* tokens = d_tokens[s];
      for (int m = 0; m < kMetaBuffers; ++m)
        begin[s * kMetaBuffers + m] =
            cap("begin", [=](cudaStream_t cs) { fake_begin<<<1, 1, 0, cs>>>(desc, s, m, log); });
      for (int l = 0; l < kLayers; ++l) {
        for (int b = 0; b < kBuckets; ++b) {
          main->set(s, UnitKind::Attn, l, 0, b, cap("attn", [=](cudaStream_t cs) {
                      fake_attn<<<1, 1, 0, cs>>>(desc, s, l, b, 0, counts, error, log, k);
                    }));
          decode->set(s, UnitKind::Attn, l, 0, b, cap("decode attn", [=](cudaStream_t cs) {
                        fake_attn<<<1, 1, 0, cs>>>(desc, s, l, b, 1, counts, error, log, k);
                      }));
        }
        for (int e = 0; e < kUnits[l]; ++e)
          for (int b = 0; b < kBuckets; ++b)
            main->set(s, UnitKind::Expert, l, e, b, cap("expert", [=](cudaStream_t cs) {
                        fake_expert<<<1, 1, 0, cs>>>(desc, s, l, e, b, log, k);
                      }));
      }
      for (int b = 0; b < kBuckets; ++b)
        main->set(s, UnitKind::Head, 0, 0, b,
                  cap("head", [=](cudaStream_t cs) { fake_head<<<1, 1, 0, cs>>>(desc, s, b, tokens, log, k); }));
    }
  }

  ~Rig() {
    bool stopped = true;
    try {
      if (loop && loop->running()) {
        host_request_shutdown(h);
        pump_until([&] { return host_shutdown_acked(h) || bool(host_check_error(*cb)); }, 5.0);
      }
      stopped = !loop || loop->wait(5.0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "device loop test: %s\n", e.what());
    }
    if (!stopped) {  // freeing anything now would wait for the loop
      std::fprintf(stderr, "device loop test: the loop did not stop; its resources are left behind\n");
      (void)loop.release();
      return;
    }
    loop.reset();
    main.reset();
    decode.reset();
    for (auto g : begin)
      if (g) cudaGraphExecDestroy(g);
    cudaFree(d_begin);
    for (int s = 0; s < kSlots; ++s) {
      cudaFree(d_counts[s]);
      cudaFree(d_error[s]);
      cudaFree(d_tokens[s]);
      cudaFree(d_desc[s]);
    }
    cudaFree(d_log);
    cudaFreeHost(knob);
    cudaFreeHost(cb_mem);
    cudaStreamDestroy(stream);
  }

  void set_unit_ns(uint32_t ns) { *static_cast<volatile uint32_t*>(knob) = ns; }

  size_t drain() {
    return host_drain_output(drain_end, [&](const OutputRecord& r) {
      records.push_back(r);
      if (r.kind == RecordKind::UnitTiming) timings[r.pass_id] += 1;
      if (r.kind == RecordKind::PassDone) {
        dones[r.pass_id] += 1;
        ++n_done;
      }
    });
  }

  // Drains until cond() holds; false at the deadline, or when the loop
  // stopped and cond() still does not hold.
  template <class F>
  bool pump_until(F&& cond, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      drain();
      if (cond()) return true;
      if (!loop->running()) {
        drain();
        return cond();
      }
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
  }

  bool publish(int slot, const BatchDesc& d, double timeout_s = 5.0) {
    return pump_until([&] { return host_publish_batch(h, slot, d); }, timeout_s);
  }

  bool wait_done(uint64_t pass, double timeout_s = 10.0) {
    return pump_until([&] { return dones.count(pass) != 0; }, timeout_s);
  }

  // Shutdown: request, drain until acknowledged (or an error), drain once
  // more, wait for the loop to stop.
  bool shutdown(double timeout_s = 5.0) {
    host_request_shutdown(h);
    const bool acked = pump_until([&] { return host_shutdown_acked(h) || bool(host_check_error(*cb)); }, timeout_s);
    drain();
    return acked && host_shutdown_acked(h) && loop->wait(timeout_s);
  }

  // The device log, once the loop stopped.
  std::vector<LogEntry> log() const {
    uint32_t n = 0;
    QLLM_CUDA_CHECK(cudaMemcpy(&n, &d_log->n, sizeof n, cudaMemcpyDeviceToHost));
    EXPECT_LE(n, kLogCap) << "device log overflow";
    std::vector<LogEntry> v(std::min(n, kLogCap));
    if (!v.empty())
      QLLM_CUDA_CHECK(cudaMemcpy(v.data(), d_log->e, v.size() * sizeof(LogEntry), cudaMemcpyDeviceToHost));
    return v;
  }

  std::vector<OutputRecord> of(uint64_t pass, RecordKind kind) const {
    std::vector<OutputRecord> v;
    for (const auto& r : records)
      if (r.pass_id == pass && r.kind == kind) v.push_back(r);
    return v;
  }
};

// The records of one pass: timings in the expected unit order, its tokens
// (rows in order, after the last timing), then exactly one PassDone.
inline void check_pass_records(const Rig& r, const BatchDesc& d, int slot, uint8_t done_flags) {
  const Expected x = expect_pass(d, slot);
  std::vector<Cursor> units;
  std::vector<uint32_t> rows;
  int done = 0;
  bool after_done = false;
  for (const auto& rec : r.records) {
    if (rec.pass_id != d.pass_id) continue;
    SCOPED_TRACE("pass " + std::to_string(d.pass_id));
    EXPECT_EQ(rec.slot, slot);
    EXPECT_FALSE(after_done) << "a record after the PassDone";
    switch (rec.kind) {
      case RecordKind::UnitTiming:
        EXPECT_TRUE(rows.empty()) << "a unit after the tokens";
        EXPECT_LE(rec.t_start_ns, rec.t_end_ns);
        units.push_back(rec.unit);
        break;
      case RecordKind::Token:
        EXPECT_EQ(rec.row, rows.size());
        EXPECT_EQ(rec.token, fake_token(d.pass_id, rec.row)) << "row " << rec.row;
        rows.push_back(rec.row);
        break;
      case RecordKind::PassDone:
        ++done;
        after_done = true;
        EXPECT_EQ(rec.flags, done_flags);
        break;
      default: ADD_FAILURE() << "record kind " << int(rec.kind);
    }
  }
  EXPECT_EQ(done, 1) << "pass " << d.pass_id;
  if (done_flags != 0) {
    EXPECT_TRUE(rows.empty()) << "pass " << d.pass_id << " ended early but pushed tokens";
    return;
  }
  EXPECT_EQ(rows.size(), d.n_sample) << "pass " << d.pass_id;
  ASSERT_EQ(units.size(), x.units.size()) << "pass " << d.pass_id;
  for (size_t i = 0; i < units.size(); ++i) {
    EXPECT_EQ(units[i].kind, x.units[i].kind) << "pass " << d.pass_id << " unit " << i;
    if (units[i].kind != UnitKind::Head) {
      EXPECT_EQ(units[i].layer, x.units[i].layer) << "pass " << d.pass_id << " unit " << i;
      EXPECT_EQ(units[i].expert, x.units[i].expert) << "pass " << d.pass_id << " unit " << i;
    }
  }
}

inline void check_pass_log(const std::vector<LogEntry>& log, const BatchDesc& d, int slot,
                           size_t prefix = SIZE_MAX) {
  const Expected x = expect_pass(d, slot);
  std::vector<LogEntry> got;
  for (const auto& e : log)
    if (e.pass == d.pass_id) got.push_back(e);
  const size_t n = std::min(prefix, x.log.size());
  ASSERT_EQ(got.size(), n) << "pass " << d.pass_id;
  for (size_t i = 0; i < n; ++i) EXPECT_TRUE(same(got[i], x.log[i])) << str(got[i]) << " != " << str(x.log[i]);
}

}  // namespace qllm::test::devloop
