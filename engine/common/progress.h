// Progress for long steps (loading, writing checkpoints, capture). On a
// terminal it redraws one line on stderr; otherwise it prints a line at the
// start and one at the end so logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace qllm {

class Progress {
 public:
  // `total` in `unit`s (bytes are shown as MiB/GiB when unit == "B").
  Progress(std::string label, uint64_t total, std::string unit = "B");
  ~Progress();  // finishes if not finished
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(uint64_t done);  // absolute
  void add(uint64_t delta) { update(done_ + delta); }
  void finish();

  // Globally silence progress output (tests, --quiet).
  static void set_enabled(bool on);

 private:
  void draw(bool final);
  std::string label_, unit_;
  uint64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace qllm
