// engine/gpu/dispatcher.h and the graph plan of engine/gpu/host_backend.h, on
// the CPU: which dispatcher a configuration gets on this machine and on made-up
// device reports (auto, host, cpu, device), the cpu backend the factory builds
// (an engine over it gives the CpuEngine's tokens), the host dispatcher's KV
// sizing from GPU memory, and how many unit graphs the host dispatcher
// captures at the tiny and the real shapes (hand-computed below).
#include "engine/common/progress.h"
#include "engine/core/cpu_engine.h"
#include "engine/core/engine_setup.h"
#include "engine/gpu/dispatcher.h"
#include "engine/gpu/host_backend.h"
#include "engine/gpu/memory_plan.h"
#include "engine/model/make_model.h"
#include "tests/test_errors.h"
#include "tests/test_paths.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>

using namespace qllm;
using namespace qllm::gpu;
using qllm::test::error_of;

namespace {

cuda::DeviceReport no_device() {
  cuda::DeviceReport r;
  r.why_none = "CUDA driver version is insufficient for CUDA runtime version";
  return r;
}

cuda::DeviceReport one_device(int major, bool device_launch) {
  cuda::DeviceReport r;
  cuda::DeviceInfo d;
  d.index = 0;
  d.name = "NVIDIA H100 80GB HBM3";
  d.cc_major = major;
  d.cc_minor = 0;
  d.device_graph_launch = device_launch;
  r.devices.push_back(d);
  return r;
}

TEST(Dispatcher, OnThisMachine) {
  const auto devs = cuda::query_devices();
  EngineConfig c;  // scheduler.dispatcher: auto
  const DispatcherChoice a = choose_dispatcher(c);
  c.scheduler_dispatcher = "host";
  if (devs.devices.empty()) {
    EXPECT_EQ(a.name, "cpu");
    EXPECT_HAS(a.reason, "auto: no CUDA device");
    EXPECT_HAS(a.reason, devs.why_none);
    const std::string msg = error_of([&] { choose_dispatcher(c); });
    EXPECT_HAS(msg, "scheduler.dispatcher 'host' is not available: no CUDA device");
    EXPECT_HAS(msg, "use 'auto' or 'cpu'");
  } else {
    EXPECT_EQ(a.name, devs.devices.front().device_graph_launch ? "device" : "cpu") << a.reason;
  }
  c.scheduler_dispatcher = "cpu";
  EXPECT_EQ(choose_dispatcher(c).name, "cpu");
  EXPECT_EQ(choose_dispatcher(c).reason, "configured");
  if (devs.devices.empty()) {
    c.scheduler_dispatcher = "device";
    EXPECT_HAS(error_of([&] { choose_dispatcher(c); }), "scheduler.dispatcher 'device' is not available: no CUDA");
  }
}

TEST(Dispatcher, AutoPicksDeviceWhereADeviceIs) {
  const auto gpu = one_device(9, true);
  const DispatcherChoice a = choose_dispatcher("auto", gpu);
  EXPECT_EQ(a.name, "device");
  EXPECT_HAS(a.reason, "NVIDIA H100 80GB HBM3");
  EXPECT_HAS(a.reason, "supports device graph launch");
  EXPECT_EQ(choose_dispatcher("host", gpu).name, "host");
  EXPECT_EQ(choose_dispatcher("host", gpu).reason, "configured");
  EXPECT_EQ(choose_dispatcher("device", gpu).name, "device");
  EXPECT_EQ(choose_dispatcher("device", gpu).reason, "configured");
  EXPECT_EQ(choose_dispatcher("cpu", gpu).name, "cpu");
  EXPECT_HAS(error_of([&] { choose_dispatcher("gpu", gpu); }), "'gpu' is not one of auto, device, host, cpu");
}

TEST(Dispatcher, NoDeviceOrAnOldOne) {
  const auto none = no_device();
  const DispatcherChoice a = choose_dispatcher("auto", none);
  EXPECT_EQ(a.name, "cpu");
  EXPECT_EQ(a.reason, "auto: no CUDA device: CUDA driver version is insufficient for CUDA runtime version");
  EXPECT_HAS(error_of([&] { choose_dispatcher("host", none); }),
             "scheduler.dispatcher 'host' is not available: no CUDA device: CUDA driver version is insufficient");
  EXPECT_HAS(error_of([&] { choose_dispatcher("device", none); }),
             "scheduler.dispatcher 'device' is not available: no CUDA device");

  const auto old = one_device(7, false);  // no device graph launch
  const DispatcherChoice b = choose_dispatcher("auto", old);
  EXPECT_EQ(b.name, "cpu");
  EXPECT_HAS(b.reason, "compute capability 7.0");
  EXPECT_HAS(error_of([&] { choose_dispatcher("host", old); }), "needs 8.0 or newer");
  EXPECT_HAS(error_of([&] { choose_dispatcher("device", old); }), "needs 8.0 or newer");
}

TEST(Dispatcher, TheCpuBackendRunsTheEngine) {
  const Checkpoint ck = test::open_tiny("olmoe", 5, "dispatch-cpu");
  EngineConfig cfg;
  cfg.kv_block_size = 8;
  cfg.kv_num_blocks = 40;
  cfg.scheduler_ls_slots = 2;
  Dispatch d = make_dispatch(cfg, ck, {"cpu", "configured"});
  ASSERT_TRUE(d.backend);
  EXPECT_EQ(d.choice.name, "cpu");
  EXPECT_EQ(d.limits.kv_blocks, 40);
  EXPECT_EQ(d.limits.ls_slots, 2);
  EXPECT_EQ(d.backend->desc().layers, ck.desc().layers);

  Request r;
  r.id = 1;
  r.prompt = {3, 1, 4, 1, 5, 9, 2, 6};
  r.max_tokens = 5;
  r.sampling.temperature = 0.7;
  r.sampling.seed = 99;
  auto drive = [&](Engine& e) {
    std::vector<int32_t> got;
    std::vector<TokenEvent> ev;
    e.submit(r);
    while (e.step(ev)) {
    }
    for (const auto& x : ev)
      if (x.token >= 0) got.push_back(x.token);
    return got;
  };
  FakeClock c1, c2;
  Engine over_dispatch(*d.backend, d.limits, c1);
  const cpu::ReferenceModel model(ck);
  CpuEngine reference(model, d.limits, c2);
  const auto got = drive(over_dispatch);
  EXPECT_EQ(got.size(), 5u);
  EXPECT_EQ(got, drive(reference));
}

// KV blocks from GPU memory: the most whose plan fits the budget.
TEST(Dispatcher, HostKvBlocksFillTheMemoryBudget) {
  MakeModelOptions o;
  o.arch = "mixtral";
  o.dry_run = true;
  o.progress = false;
  const ModelDesc d = plan_model(o).desc;
  EngineConfig cfg;
  cfg.kv_gpu_memory_fraction = 0.5;
  const EngineLimits l = limits_from_config(cfg, d);
  const int max_len = 4096;
  MemoryParams p;
  p.slots = 2;
  p.slot.max_tokens = l.max_tokens_per_step;
  p.slot.max_seqs = l.max_seqs_per_step;
  p.slot.max_seq_len = max_len;
  p.slot.block_size = l.block_size;
  auto total_with = [&](int64_t blocks) {
    p.kv_blocks = blocks;
    return plan_device_memory(d, p).total_bytes;
  };
  // Tiny Mixtral: 2 layers x K,V x 16 tokens x 2 kv heads x 16 dims x 2 bytes = 4096 bytes a block.
  EXPECT_EQ(total_with(1) - total_with(0), 4096u);
  const uint64_t total = uint64_t(80) << 30;
  // Plenty of memory: room for server.max_concurrent_requests (256) sequences of 4096 / 16 blocks.
  EXPECT_EQ(host_kv_blocks(cfg, d, l, max_len, total, total), 256 * 256);
  // Free memory (less than the fraction) bounds it: n blocks fit, n + 1 do not.
  const uint64_t free_bytes = total_with(0) + 1000 * 4096 + 123;
  const int64_t n = host_kv_blocks(cfg, d, l, max_len, free_bytes, total);
  EXPECT_EQ(n, 1000);
  EXPECT_LE(total_with(n), free_bytes);
  EXPECT_GT(total_with(n + 1), free_bytes);
  // The fraction bounds it: half of `small` is the budget.
  const uint64_t small = 2 * (total_with(0) + 10 * 4096);
  EXPECT_EQ(host_kv_blocks(cfg, d, l, max_len, small, small), 10);
  EXPECT_EQ(host_kv_blocks(cfg, d, l, max_len, total_with(0) - 1, total), 0);
}

struct GraphCase {
  const char* arch;
  const char* preset;
  int slots, max_tokens, max_seqs;
  int64_t begin, attn, attn_decode, expert, head, total;
};

// Per slot: 1 begin; attn layers x nb; decode attn layers x nh; expert
// (sum over layers of E, or 1 for a dense layer) x nb; head nh; with nb =
// log2(bucket_for(T)) + 1 and nh = log2(bucket_for(S)) + 1.
//   tiny mixtral (2 layers, 4 experts), T 64 (nb 7), S 8 (nh 4), 2 slots:
//     2 + 2*2*7 + 2*2*4 + 2*(2*4)*7 + 2*4 = 2 + 28 + 16 + 112 + 8 = 166
//   tiny qwen3_moe (3 layers, layer 1 dense, 8 experts), T 64, S 8, 2 slots:
//     2 + 2*3*7 + 2*3*4 + 2*(8+1+8)*7 + 2*4 = 2 + 42 + 24 + 238 + 8 = 314
//   mixtral-8x7b (32 layers, 8 experts), defaults T 256 (nb 9), S 32 (nh 6), 2 slots:
//     2 + 2*32*9 + 2*32*6 + 2*(32*8)*9 + 2*6 = 2 + 576 + 384 + 4608 + 12 = 5582
//   olmoe-1b-7b (16 layers, 64 experts), defaults, 2 slots:
//     2 + 2*16*9 + 2*16*6 + 2*(16*64)*9 + 12 = 2 + 288 + 192 + 18432 + 12 = 18926
//   qwen3-30b-a3b (48 layers, 128 experts), defaults, 2 slots:
//     2 + 2*48*9 + 2*48*6 + 2*(48*128)*9 + 12 = 2 + 864 + 576 + 110592 + 12 = 112046
const GraphCase kGraphCases[] = {
    {"mixtral", "tiny", 2, 64, 8, 2, 28, 16, 112, 8, 166},
    {"qwen3_moe", "tiny", 2, 64, 8, 2, 42, 24, 238, 8, 314},
    {"mixtral", "mixtral-8x7b", 2, 256, 32, 2, 576, 384, 4608, 12, 5582},
    {"olmoe", "olmoe-1b-7b", 2, 256, 32, 2, 288, 192, 18432, 12, 18926},
    {"qwen3_moe", "qwen3-30b-a3b", 2, 256, 32, 2, 864, 576, 110592, 12, 112046},
};

TEST(HostBackendPlan, UnitGraphCounts) {
  for (const auto& c : kGraphCases) {
    MakeModelOptions o;
    o.arch = c.arch;
    o.preset = c.preset;
    o.dry_run = true;
    o.progress = false;
    const ModelDesc d = plan_model(o).desc;
    const GraphCounts g = count_unit_graphs(d, c.slots, c.max_tokens, c.max_seqs);
    SCOPED_TRACE(c.preset + std::string(" ") + c.arch);
    EXPECT_EQ(g.begin, c.begin);
    EXPECT_EQ(g.attn, c.attn);
    EXPECT_EQ(g.attn_decode, c.attn_decode);
    EXPECT_EQ(g.expert, c.expert);
    EXPECT_EQ(g.head, c.head);
    EXPECT_EQ(g.total(), c.total);
  }
  // A step of 100 tokens still needs the 128 bucket; 1 token and 1 sequence one bucket each.
  MakeModelOptions o;
  o.arch = "mixtral";
  o.dry_run = true;
  o.progress = false;
  const ModelDesc d = plan_model(o).desc;
  EXPECT_EQ(count_unit_graphs(d, 1, 100, 1).attn, 2 * 8);
  EXPECT_EQ(count_unit_graphs(d, 1, 1, 1).total(), 1 + 2 + 2 + 2 * 4 + 1);
}

TEST(HostBackendPlan, SummaryAndErrorWords) {
  CaptureSummary s;
  s.graphs = {2, 28, 16, 112, 8};
  s.seconds = 0.4123;
  s.device_bytes = 12'600'000;
  EXPECT_EQ(s.str(), "166 unit graphs (2 slots: 2 begin, 28 attn + 16 decode attn, 112 expert, 8 head) captured "
                     "in 0.41 s, 12.6 MB of device memory");
  EXPECT_EQ(error_word_meaning(0), "no error");
  EXPECT_HAS(error_word_meaning(1), "token id outside the vocabulary");
  EXPECT_HAS(error_word_meaning(1), "error word 1");
}

TEST(HostBackendPlan, ConfigFromEngineLimits) {
  EngineLimits l;
  l.ls_slots = 1;
  l.be_slots = 3;
  l.max_tokens_per_step = 96;
  l.max_seqs_per_step = 12;
  l.kv_blocks = 500;
  l.block_size = 32;
  const HostBackendConfig c = HostBackendConfig::from(l, 2048);
  EXPECT_EQ(c.slots, 4);
  const GpuModelConfig m = c.model_config();
  EXPECT_EQ(m.slots, 4);
  EXPECT_EQ(m.slot.max_tokens, 96);
  EXPECT_EQ(m.slot.max_seqs, 12);
  EXPECT_EQ(m.slot.max_seq_len, 2048);
  EXPECT_EQ(m.slot.block_size, 32);
  EXPECT_EQ(m.slot.sm_count, 0);  // the device's
  EXPECT_EQ(m.kv_blocks, 500);
}

}  // namespace
