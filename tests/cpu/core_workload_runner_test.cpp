// A workload run end to end on the cpu dispatcher: every request finishes with
// its max_tokens, records are complete and consistent, and impossible requests
// fail alone.
#include "engine/common/progress.h"
#include "engine/core/workload_runner.h"
#include "engine/model/make_model.h"
#include "tests/test_paths.h"
#include "tests/tiny_model.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qllm;

namespace {

struct Tiny {
  Checkpoint ck;
  cpu::ReferenceModel model;
};

const Tiny& tiny() {
  static const std::unique_ptr<Tiny> t = [] {
    auto ck = test::open_tiny("mixtral", 0, "runner-tiny");
    auto model = cpu::ReferenceModel(ck);
    return std::make_unique<Tiny>(Tiny{std::move(ck), std::move(model)});
  }();
  return *t;
}

}  // namespace

TEST(WorkloadRunner, OpenLoopRunCompletesEveryRequest) {
  const auto spec = workload::parse_workload_spec(R"(
name: t
seed: 5
num_requests: 25
arrivals: {process: poisson, rate: 50}
ls_fraction: 0.3
lengths: {prompt: [4, 40], output: [1, 9]}
)", "t.yaml");
  const auto gen = workload::generate_open_loop(spec, {});
  for (auto policy : {sched::Policy::FcfsIteration, sched::Policy::PriorityExpert}) {
    EngineLimits lim;
    lim.policy = policy;
    lim.prefill_chunk = 16;
    lim.max_tokens_per_step = 32;
    const auto run = run_workload(tiny().model, spec, {}, lim);
    ASSERT_EQ(run.records.size(), 25u);
    for (size_t i = 0; i < run.records.size(); ++i) {
      const auto& r = run.records[i];
      const auto& w = gen[i];
      ASSERT_EQ(r.id, w.id);
      EXPECT_TRUE(r.finished_ok) << r.error;
      EXPECT_EQ(r.cls, w.cls);
      EXPECT_EQ(r.output_tokens, w.max_tokens);
      EXPECT_EQ(int64_t(r.token_times_s.size()), r.output_tokens);
      EXPECT_DOUBLE_EQ(r.arrival_s, w.arrival_s);
      EXPECT_LE(r.arrival_s, r.first_scheduled_s);
      EXPECT_LT(r.first_scheduled_s, r.first_token_s);
      EXPECT_LE(r.first_token_s, r.finish_s);
      EXPECT_TRUE(std::is_sorted(r.token_times_s.begin(), r.token_times_s.end()));
    }
    const auto s = workload::summarize(run.records, spec);
    EXPECT_EQ(s.all.completed, 25);
  }
}

TEST(WorkloadRunner, ClosedLoopBeKeepsConcurrencyAndStops) {
  const auto spec = workload::parse_workload_spec(R"(
name: c
seed: 2
duration_s: 0.5
be_concurrency: 3
arrivals: {process: poisson, rate: 20}
lengths: {prompt: [8, 24], output: [2, 6]}
)", "c.yaml");
  const auto run = run_workload(tiny().model, spec, {}, EngineLimits{});
  int be = 0, ls = 0;
  for (const auto& r : run.records) {
    EXPECT_TRUE(r.finished_ok) << r.error;
    (r.cls == workload::RequestClass::BE ? be : ls)++;
  }
  EXPECT_GT(be, 3);  // BE requests were replaced as they finished
  EXPECT_GT(ls, 0);
}

TEST(WorkloadRunner, ImpossibleRequestsFailAlone) {
  const auto spec = workload::parse_workload_spec(R"(
name: big
seed: 1
num_requests: 6
arrivals: {process: poisson, rate: 100}
ls_fraction: 0.5
lengths: {prompt: [10, 200], output: 8}
)", "big.yaml");
  EngineLimits lim;
  lim.kv_blocks = 8;  // 128 tokens: the longer prompts can never fit
  lim.block_size = 16;
  const auto run = run_workload(tiny().model, spec, {}, lim);
  int ok = 0, failed = 0;
  for (const auto& r : run.records) {
    if (r.finished_ok) {
      ++ok;
      EXPECT_EQ(r.output_tokens, 8);
    } else {
      ++failed;
      EXPECT_NE(r.error.find("exceeds"), std::string::npos) << r.error;
      EXPECT_GT(r.prompt_tokens + 8, 128);
    }
  }
  EXPECT_EQ(ok + failed, 6);
  EXPECT_GT(ok, 0);
  EXPECT_GT(failed, 0);
}
