// `qllm serve` as a process: it prints where it listens, answers HTTP, and on
// SIGTERM/SIGINT ends in-flight streams properly and exits 0. Bad settings
// (an unknown value, a dispatcher that is not available) are refused at
// start with a message.
#include "kernels/device_info.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <regex>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace {

// A child `qllm serve ...` with its stderr captured.
struct Child {
  pid_t pid = -1;
  int err_fd = -1;
  std::string err;

  explicit Child(const std::vector<std::string>& args) {
    static const auto cache = qllm::test::temp_dir("cli-serve-cache");
    int fds[2];
    if (pipe(fds) != 0) return;
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 2);
      dup2(fds[1], 1);
      close(fds[0]);
      setenv("QLLM_CACHE_DIR", cache.c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(QLLM_BINARY));
      argv.push_back(const_cast<char*>("serve"));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(QLLM_BINARY, argv.data());
      _exit(127);
    }
    close(fds[1]);
    err_fd = fds[0];
  }
  ~Child() {
    if (pid > 0 && exit_code(0) < 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (err_fd >= 0) close(err_fd);
  }
  // Reads stderr until `re` matches (or `seconds` pass); returns the match.
  std::smatch wait_for(const std::regex& re, double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::smatch m;
    while (std::chrono::steady_clock::now() < until) {
      if (std::regex_search(err, m, re)) return m;
      pollfd p{err_fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        char buf[4096];
        const ssize_t n = read(err_fd, buf, sizeof buf);
        if (n <= 0) break;
        err.append(buf, size_t(n));
      }
    }
    std::regex_search(err, m, re);
    return m;
  }
  // The exit code once it has exited within `seconds`, else -1.
  int exit_code(double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    do {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    } while (std::chrono::steady_clock::now() < until);
    return -1;
  }
};

}  // namespace

TEST(CliServe, SigtermEndsStreamsAndExitsCleanly) {
  for (int sig : {SIGTERM, SIGINT}) {
    Child c({"--port", "0", "--set", "server.shutdown_timeout_s=0.2", "--set", "scheduler.dispatcher=cpu"});
    const auto m = c.wait_for(std::regex(R"(listening on http://127\.0\.0\.1:(\d+))"), 120);
    ASSERT_FALSE(m.empty()) << c.err;
    const int port = std::stoi(m[1]);
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(30);
    auto models = cli.Get("/v1/models");
    ASSERT_TRUE(models);
    EXPECT_EQ(models->status, 200);

    std::atomic<int> chunks{0};
    std::string body;
    std::thread t([&] {
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = R"({"prompt": [5, 6, 7], "max_tokens": 3000, "ignore_eos": true, "stream": true})";
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        body.append(d, n);
        ++chunks;
        return true;
      };
      httplib::Response res;
      httplib::Error e;
      httplib::Client c2("127.0.0.1", port);
      c2.set_read_timeout(30);
      c2.send(req, res, e);
    });
    while (chunks < 3) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    kill(c.pid, sig);
    t.join();
    EXPECT_EQ(c.exit_code(10), 0) << c.err;
    EXPECT_NE(body.find("\"finish_reason\":\"abort\""), std::string::npos) << body.substr(body.size() - 300);
    EXPECT_NE(body.rfind("data: [DONE]"), std::string::npos);
    c.wait_for(std::regex("stopped"), 1);
    EXPECT_NE(c.err.find("shutting down"), std::string::npos) << c.err;
  }
}

TEST(CliServe, RefusesWhatItCannotServe) {
  if (!qllm::cuda::gpu_available()) {  // where a GPU is, `device` serves
    Child c({"--port", "0", "--set", "scheduler.dispatcher=device"});
    EXPECT_EQ(c.exit_code(60), 1);
    c.wait_for(std::regex("error"), 1);
    EXPECT_NE(c.err.find("scheduler.dispatcher 'device' is not available"), std::string::npos) << c.err;
    EXPECT_NE(c.err.find("use 'auto' or 'cpu'"), std::string::npos) << c.err;
  }
  if (!qllm::cuda::gpu_available()) {  // where a GPU is, `host` serves
    Child c({"--port", "0", "--set", "scheduler.dispatcher=host"});
    EXPECT_EQ(c.exit_code(60), 1);
    c.wait_for(std::regex("error"), 1);
    EXPECT_NE(c.err.find("scheduler.dispatcher 'host' is not available: no CUDA device"), std::string::npos)
        << c.err;
  }
  {
    Child c({"--port", "0", "--set", "server.ls_max_priority=oops"});
    EXPECT_EQ(c.exit_code(60), 1);
    c.wait_for(std::regex("error"), 1);
    EXPECT_NE(c.err.find("server.ls_max_priority"), std::string::npos) << c.err;
  }
  // A port that is taken.
  httplib::Server holder;
  const int port = holder.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  Child c({"--port", std::to_string(port)});
  EXPECT_EQ(c.exit_code(60), 1);
  c.wait_for(std::regex("cannot bind"), 1);
  EXPECT_NE(c.err.find("cannot bind 127.0.0.1:" + std::to_string(port)), std::string::npos) << c.err;
}
