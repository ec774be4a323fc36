// qllm run --trace: one Chrome/Perfetto trace per policy, written beside the
// run file, that parses and has the engine's tracks and units; the
// profiling.trace_path key standing in for --trace; and qllm serve writing
// that key's trace when it shuts down.
#include "tests/cli_test_util.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <poll.h>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace {

using Result = qllm::test::CliResult;

// CPU tests pin the cpu dispatcher (auto picks host where a GPU is).
Result run_qllm(const std::string& args) {
  return qllm::test::run_qllm(args + " --set scheduler.dispatcher=cpu", "", "cli-trace-cache");
}

nlohmann::json parse_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// The checks every trace of a tiny-mixed run passes.
void check_trace(const std::filesystem::path& p, const std::string& policy) {
  SCOPED_TRACE(p.string());
  ASSERT_TRUE(std::filesystem::exists(p));
  nlohmann::json t;
  ASSERT_NO_THROW(t = parse_file(p));
  EXPECT_EQ(t.value("displayTimeUnit", ""), "ms");
  std::set<int> named;
  std::set<std::string> tracks;
  std::string process;
  for (const auto& e : t.at("traceEvents")) {
    if (e["ph"] != "M") continue;
    if (e["name"] == "thread_name") {
      named.insert(e["tid"].get<int>());
      tracks.insert(e["args"]["name"].get<std::string>());
    }
    if (e["name"] == "process_name") process = e["args"]["name"];
  }
  EXPECT_EQ(process, "qllm engine (cpu, " + policy + ")");
  for (const char* name : {"requests", "slot 0 (LS)", "slot 1 (BE)"}) EXPECT_TRUE(tracks.count(name)) << name;
  int64_t units = 0, heads = 0, arrivals = 0, finishes = 0;
  std::map<int, std::vector<std::pair<int64_t, int64_t>>> spans;  // per track, in ns as Perfetto reads them
  for (const auto& e : t["traceEvents"]) {
    if (e["ph"] == "X") {
      const auto ns = [](const nlohmann::json& us) { return static_cast<int64_t>(us.get<double>() * 1000.0); };
      spans[e["tid"].get<int>()].emplace_back(ns(e["ts"]), ns(e["ts"]) + ns(e["dur"]));
      EXPECT_GE(e["ts"].get<double>(), 0) << e;
      EXPECT_GE(e["dur"].get<double>(), 0) << e;
      EXPECT_TRUE(named.count(e["tid"].get<int>())) << e;
      units += e["name"] != "preempted";
      heads += e["name"] == "head";
    }
    if (e["ph"] == "i") {
      const std::string n = e["name"];
      arrivals += n.ends_with(" arrival");
      finishes += n.ends_with(" finish");
    }
  }
  for (auto& [tid, v] : spans) {  // slices on one track never overlap
    std::sort(v.begin(), v.end());
    for (size_t i = 1; i < v.size(); ++i) EXPECT_LE(v[i - 1].second, v[i].first) << "tid " << tid;
  }
  EXPECT_GT(units, 0);
  EXPECT_GT(heads, 0);
  EXPECT_EQ(arrivals, 40);  // configs/workloads/tiny-mixed.yaml: 40 requests
  EXPECT_EQ(finishes, 40);
}

}  // namespace

TEST(CliTrace, RunWritesOneTracePerPolicy) {
  const auto dir = qllm::test::temp_dir("cli-trace");
  const auto wl = std::string(QLLM_SOURCE_DIR) + "/configs/workloads/tiny-mixed.yaml";
  const auto r = run_qllm("run --workload '" + wl + "' --policies fcfs-iteration,priority-expert --out '" +
                          (dir / "run.json").string() + "' --trace '" + (dir / "tr").string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("tr-priority-expert.json"), std::string::npos) << r.out;  // says where
  check_trace(dir / "tr-fcfs-iteration.json", "fcfs-iteration");
  check_trace(dir / "tr-priority-expert.json", "priority-expert");
  // fcfs-iteration runs each pass to its end: nothing is ever preempted.
  const auto t = parse_file(dir / "tr-fcfs-iteration.json");
  for (const auto& e : t["traceEvents"]) EXPECT_NE(e["name"], "preempted");
}

TEST(CliTrace, ConfigKeyStandsInForTheOption) {
  const auto dir = qllm::test::temp_dir("cli-trace-config");
  const auto wl = std::string(QLLM_SOURCE_DIR) + "/configs/workloads/tiny-mixed.yaml";
  const auto r = run_qllm("run -q --workload '" + wl + "' --policies priority-layer --out '" +
                          (dir / "run.json").string() + "' --set profiling.trace_path='" +
                          (dir / "cfg.json").string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  check_trace(dir / "cfg-priority-layer.json", "priority-layer");
}

TEST(CliTrace, ServeWritesTheTraceAtShutdown) {
  const auto dir = qllm::test::temp_dir("cli-trace-serve");
  const auto path = dir / "serve.json";
  static const auto cache = qllm::test::temp_dir("cli-trace-serve-cache");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string set = "profiling.trace_path=" + path.string();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    dup2(fds[1], 1);
    close(fds[0]);
    setenv("QLLM_CACHE_DIR", cache.c_str(), 1);
    execl(QLLM_BINARY, QLLM_BINARY, "serve", "--port", "0", "--set", set.c_str(), "--set",
          "scheduler.dispatcher=cpu", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string err;
  auto read_until = [&](const std::regex& re, double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::smatch m;
    while (!std::regex_search(err, m, re) && std::chrono::steady_clock::now() < until) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        char buf[4096];
        const ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0) break;
        err.append(buf, size_t(n));
      }
    }
    return m;
  };
  const auto m = read_until(std::regex(R"(listening on http://127\.0\.0\.1:(\d+))"), 120);
  if (m.empty()) kill(pid, SIGKILL);
  ASSERT_FALSE(m.empty()) << err;
  httplib::Client cli("127.0.0.1", std::stoi(m[1]));
  cli.set_read_timeout(60);
  for (int i = 0; i < 2; ++i) {
    const auto res = cli.Post("/v1/completions", R"({"prompt": [5, 6, 7], "max_tokens": 3, "ignore_eos": true})",
                              "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
  }
  kill(pid, SIGTERM);
  read_until(std::regex("trace of the last .*serve\\.json"), 60);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  EXPECT_NE(err.find(path.string()), std::string::npos) << err;  // says where

  nlohmann::json t;
  ASSERT_NO_THROW(t = parse_file(path)) << err;
  int64_t units = 0, finishes = 0;
  std::string process;
  for (const auto& e : t.at("traceEvents")) {
    units += e["ph"] == "X" && e["name"] != "preempted";
    finishes += e["ph"] == "i" && e["name"].get<std::string>().ends_with(" finish");
    if (e["ph"] == "M" && e["name"] == "process_name") process = e["args"]["name"];
  }
  EXPECT_EQ(process, "qllm engine (cpu, priority-expert)");
  EXPECT_GT(units, 0);
  EXPECT_EQ(finishes, 2);
}
