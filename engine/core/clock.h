// The engine's notion of time. Scheduling decisions (BE promotion) and every
// reported timestamp read it, so tests can run the engine on a fake clock.
#pragma once

#include <chrono>
#include <thread>

namespace qllm {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double now() const = 0;  // seconds
  // Called after each work unit with the wall time it took.
  virtual void unit_ran(double wall_s) = 0;
  // Called when the engine has nothing to run until `t` (an arrival).
  virtual void idle_until(double t) = 0;
};

// Fake time: every unit costs `unit_s`; idle time jumps.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(double unit_s = 1e-3) : unit_s_(unit_s) {}
  double now() const override { return t_; }
  void unit_ran(double) override { t_ += unit_s_; }
  void idle_until(double t) override { t_ = t > t_ ? t : t_; }

 private:
  double unit_s_, t_ = 0;
};

// Measured time: units advance it by their wall time, idle gaps jump, so a
// workload runs as fast as the machine computes while its latencies are
// those of real execution.
class MeasuredClock final : public Clock {
 public:
  double now() const override { return t_; }
  void unit_ran(double wall_s) override { t_ += wall_s; }
  void idle_until(double t) override { t_ = t > t_ ? t : t_; }

 private:
  double t_ = 0;
};

// Wall time since construction (steady), for serving: requests arrive in
// real time and every timestamp is real. Thread-safe.
class WallClock final : public Clock {
 public:
  double now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  void unit_ran(double) override {}
  void idle_until(double) override {}

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

// Wall time since construction, where idle gaps are waited out: a workload
// replayed in real time, for backends whose passes run on their own (the
// device dispatcher), so a unit's time cannot be measured by the caller.
class RealTimeClock final : public Clock {
 public:
  double now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  void unit_ran(double) override {}
  void idle_until(double t) override {
    std::this_thread::sleep_until(t0_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                            std::chrono::duration<double>(t)));
  }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace qllm
