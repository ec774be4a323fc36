#include "engine/common/progress.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdio>

#include <unistd.h>

namespace qllm {
namespace {

std::atomic<bool> g_enabled{true};

std::string amount(uint64_t v, const std::string& unit) {
  if (unit != "B") return fmt::format("{} {}", v, unit);
  if (v >= (1ull << 30)) return fmt::format("{:.2f} GiB", double(v) / double(1ull << 30));
  if (v >= (1ull << 20)) return fmt::format("{:.1f} MiB", double(v) / double(1ull << 20));
  return fmt::format("{:.1f} KiB", double(v) / 1024.0);
}

}  // namespace

void Progress::set_enabled(bool on) { g_enabled = on; }

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  if (g_enabled && !tty_) std::fprintf(stderr, "%s: %s ...\n", label_.c_str(), amount(total_, unit_).c_str());
  draw(false);
}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  done_ = total_;
  draw(true);
}

void Progress::draw(bool final) {
  if (!g_enabled) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (!tty_) {
    if (final)
      std::fprintf(stderr, "%s: done, %s in %.1f s\n", label_.c_str(), amount(total_, unit_).c_str(), secs);
    return;
  }
  const double frac = total_ ? double(done_) / double(total_) : 1.0;
  const int width = 30;
  const int filled = int(frac * width);
  std::string bar(size_t(filled), '#');
  bar.resize(size_t(width), '.');
  std::fprintf(stderr, "\r%s [%s] %3d%% %s / %s %.1fs%s", label_.c_str(), bar.c_str(),
               int(frac * 100.0), amount(done_, unit_).c_str(), amount(total_, unit_).c_str(), secs,
               final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace qllm
