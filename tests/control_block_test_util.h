// Helpers for the control-block protocol tests on the CPU: a control block
// in ordinary aligned host memory, checksummed descriptors, and the
// waiting and jitter that the producer and consumer threads share.
#pragma once

#include "device_scheduler/control_block.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace qllm::sched::test {

using Clock = std::chrono::steady_clock;

inline uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

// A block in ordinary host memory, 64-byte aligned.
struct Block {
  void* mem = nullptr;
  ControlBlock* cb = nullptr;
  explicit Block(ControlBlockConfig cfg = {}) {
    const size_t bytes = control_block_bytes(cfg.out_capacity);
    mem = ::operator new(bytes, std::align_val_t{64});
    std::memset(mem, 0xA5, bytes);  // garbage before init
    cb = control_block_init(mem, bytes, cfg);
  }
  ~Block() { ::operator delete(mem, std::align_val_t{64}); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
};

inline uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Every field is a function of the pass id: a consumer that reads a
// descriptor half old, half new sees fields that do not match its id.
inline BatchDesc make_desc(uint64_t pass_id) {
  const uint64_t h = mix(pass_id);
  BatchDesc d{};
  d.pass_id = pass_id;
  d.n_rows = 1 + uint32_t(h % 4096);
  d.n_seqs = uint16_t(1 + (h >> 12) % std::min<uint32_t>(d.n_rows, 64));
  d.n_sample = uint16_t((h >> 24) % (d.n_seqs + 1u));
  d.meta_index = uint16_t((h >> 32) % kMetaBuffers);
  d.bucket = uint16_t(h >> 48);
  d.cls = (pass_id % 3 == 0) ? PriorityClass::LS : PriorityClass::BE;
  return d;
}

inline bool desc_matches(const BatchDesc& d) {
  const BatchDesc want = make_desc(d.pass_id);
  return std::memcmp(&d, &want, sizeof d) == 0;
}

inline int32_t token_of(uint64_t pass_id, uint32_t row) { return int32_t(mix(pass_id * 131 + row) % 150000); }

// Shared by the threads of one test: the first failure, and a stop flag.
struct Failures {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first;
  void fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    if (first.empty()) first = what;
    stop.store(true);
  }
};

// Spins (yielding) until pred() or a deadline that only a hang reaches.
template <class Pred>
bool wait_until(Pred pred, Failures& f, double seconds = 30.0) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (!pred()) {
    if (f.stop.load() || Clock::now() > end) return false;
    std::this_thread::yield();
  }
  return true;
}

// Random pauses, so that each side sometimes runs far ahead of the other.
struct Jitter {
  std::mt19937 rng;
  explicit Jitter(uint32_t seed) : rng(seed) {}
  void maybe_pause(uint32_t one_in) {
    if (rng() % one_in == 0)
      for (uint32_t i = rng() % 64; i > 0; --i) std::this_thread::yield();
  }
};

}  // namespace qllm::sched::test
