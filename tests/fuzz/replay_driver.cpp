// A small libFuzzer-compatible driver that needs no clang: it runs every file
// of the given corpus folders (or single files) through LLVMFuzzerTestOneInput,
// then deterministic random mutations of them for a bounded time / count.
//
//   fuzz_safetensors_replay [--seconds S] [--iterations N] [--seed X]
//                           [--artifacts DIR] PATH...
//
// No coverage feedback: the mutations know the safetensors layout instead
// (u64 header length, JSON header, data region) so that many inputs get past
// the first checks. A crash or an escaping exception writes the input to
// DIR/crash-<seed>-<iteration> and exits non-zero; rerun with that file as
// the only PATH and --iterations 0 to reproduce it.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define QLLM_REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QLLM_REPLAY_ASAN 1
#endif
#endif
#ifdef QLLM_REPLAY_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

struct Rng {  // splitmix64: the same seed gives the same run everywhere
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n ? size_t(next() % n) : 0; }
  bool coin() { return next() & 1; }
};

const char* const kNumbers[] = {
    "0", "1", "2", "3", "4", "7", "8", "-1", "-0", "16", "255", "256", "65536", "4294967295",
    "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551615",
    "18446744073709551616", "99999999999999999999999", "1e3", "1.5", "0.0", "1E400", "-9e18"};
const char* const kStrings[] = {
    "dtype", "shape", "data_offsets", "__metadata__", "BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2",
    "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "F4", "", "a",
    "\\u0000", "\\ud800", "\\u00e9", "\\\""};
const char* const kTokens[] = {"{", "}", "[", "]", ",", ":", "\"", "null", "true", " ", "[]",
                               "{}", "[0,0]", "\"x\":{}", "\"__metadata__\":{}", "\\"};

// The input as u64 length + header + data, when the length fits the input.
struct Split {
  std::string header;
  Bytes data;
};
bool split(const Bytes& in, Split& out) {
  if (in.size() < 8) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | in[size_t(i)];
  if (n > in.size() - 8) return false;
  out.header.assign(in.begin() + 8, in.begin() + 8 + std::ptrdiff_t(n));
  out.data.assign(in.begin() + 8 + std::ptrdiff_t(n), in.end());
  return true;
}
Bytes join(const Split& s) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(uint64_t(s.header.size()) >> (8 * i));
  b.insert(b.end(), s.header.begin(), s.header.end());
  b.insert(b.end(), s.data.begin(), s.data.end());
  return b;
}

// Replaces a random run of digits (with its sign) by another number.
bool tweak_number(std::string& h, Rng& r) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < h.size(); ++i)
    if ((h[i] >= '0' && h[i] <= '9') && (i == 0 || !(h[i - 1] >= '0' && h[i - 1] <= '9')))
      starts.push_back(i);
  if (starts.empty()) return false;
  size_t b = starts[r.below(starts.size())], e = b;
  while (e < h.size() && ((h[e] >= '0' && h[e] <= '9') || h[e] == '.' || h[e] == 'e')) ++e;
  if (b > 0 && h[b - 1] == '-') --b;
  std::string rep;
  if (r.coin()) {
    rep = kNumbers[r.below(std::size(kNumbers))];
  } else {  // nudge the value a little: off-by-one offsets and sizes
    const uint64_t v = uint64_t(std::strtoll(h.substr(b, e - b).c_str(), nullptr, 10));
    rep = std::to_string(int64_t(v + r.below(9) - 4));  // wraps modulo 2^64
  }
  h.replace(b, e - b, rep);
  return true;
}

// Replaces a random JSON string body by a schema word.
bool tweak_string(std::string& h, Rng& r) {
  std::vector<size_t> quotes;
  for (size_t i = 0; i < h.size(); ++i)
    if (h[i] == '"' && (i == 0 || h[i - 1] != '\\')) quotes.push_back(i);
  if (quotes.size() < 2) return false;
  const size_t q = r.below(quotes.size() / 2) * 2;
  const size_t b = quotes[q] + 1, e = quotes[q + 1];
  h.replace(b, e - b, kStrings[r.below(std::size(kStrings))]);
  return true;
}

// Copies or drops one `"name":{...}` entry (duplicates, holes, overlaps).
bool tweak_entry(std::string& h, Rng& r) {
  const size_t b = h.find("\":{", r.below(h.size()));
  if (b == std::string::npos) return false;
  const size_t kb = h.rfind('"', b == 0 ? 0 : b - 1);
  const size_t e = h.find('}', b);
  if (kb == std::string::npos || e == std::string::npos) return false;
  const std::string ent = h.substr(kb, e + 1 - kb);
  if (r.coin())
    h.insert(e + 1, "," + ent);
  else
    h.erase(kb, e + 1 - kb);
  return true;
}

void mutate_header(Split& s, Rng& r) {
  std::string& h = s.header;
  switch (r.below(6)) {
    case 0:
      if (tweak_number(h, r)) return;
      break;
    case 1:
      if (tweak_string(h, r)) return;
      break;
    case 2:
      if (tweak_entry(h, r)) return;
      break;
    case 3:
      h.insert(r.below(h.size() + 1), kTokens[r.below(std::size(kTokens))]);
      return;
    case 4:
      if (!h.empty()) h.erase(r.below(h.size()), 1 + r.below(4));
      return;
    default:  // data region longer or shorter
      if (r.coin() && !s.data.empty())
        s.data.resize(r.below(s.data.size()));
      else
        s.data.resize(s.data.size() + 1 + r.below(16), uint8_t(r.next()));
      return;
  }
  h.insert(r.below(h.size() + 1), kTokens[r.below(std::size(kTokens))]);
}

void mutate_raw(Bytes& b, const std::vector<Bytes>& pool, Rng& r) {
  switch (r.below(6)) {
    case 0:  // bit flips
      for (size_t k = 1 + r.below(4); k > 0 && !b.empty(); --k)
        b[r.below(b.size())] ^= uint8_t(1u << r.below(8));
      return;
    case 1: {  // insert random bytes
      Bytes ins(1 + r.below(16));
      for (auto& c : ins) c = uint8_t(r.next());
      b.insert(b.begin() + std::ptrdiff_t(r.below(b.size() + 1)), ins.begin(), ins.end());
      return;
    }
    case 2:  // delete a range
      if (!b.empty()) {
        const size_t at = r.below(b.size());
        const size_t n = std::min(b.size() - at, 1 + r.below(16));
        b.erase(b.begin() + std::ptrdiff_t(at), b.begin() + std::ptrdiff_t(at + n));
      }
      return;
    case 3: {  // splice: our prefix, another input's suffix
      const Bytes& o = pool[r.below(pool.size())];
      const size_t cut = r.below(b.size() + 1), from = r.below(o.size() + 1);
      b.resize(cut);
      b.insert(b.end(), o.begin() + std::ptrdiff_t(from), o.end());
      return;
    }
    case 4: {  // header length edits
      if (b.size() < 8) b.resize(8, 0);
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | b[size_t(i)];
      const uint64_t fsz = b.size() - 8;
      const uint64_t choices[] = {0, 1, fsz, fsz + 1, fsz - 1, n + 1, n - 1, n + 8, ~0ull,
                                  100ull << 20, (100ull << 20) + 1, 1ull << 63, r.next()};
      n = choices[r.below(std::size(choices))];
      for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
      return;
    }
    default:  // truncate
      b.resize(r.below(b.size() + 1));
      return;
  }
}

Bytes mutate(const Bytes& in, const std::vector<Bytes>& pool, Rng& r) {
  Bytes b = in;
  for (size_t k = 1 + r.below(4); k > 0; --k) {
    Split s;
    if (r.below(3) != 0 && split(b, s)) {
      mutate_header(s, r);  // the length field follows the header...
      b = join(s);
      if (r.below(8) == 0) mutate_raw(b, pool, r);  // ...unless we break it on purpose
    } else {
      mutate_raw(b, pool, r);
    }
  }
  return b;
}

// The input being run, for the crash handler.
const Bytes* g_current = nullptr;
char g_crash_path[4096] = "crash-input";

// Async-signal-safe: open, write, close only.
void save_current() {
  const int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0 && g_current) {
    ssize_t w = ::write(fd, g_current->data(), g_current->size());
    (void)w;
  }
  if (fd >= 0) ::close(fd);
  static const char msg[] = "fuzz replay: crashed; input saved to ";
  ssize_t w = ::write(2, msg, sizeof msg - 1);
  w = ::write(2, g_crash_path, std::strlen(g_crash_path));
  w = ::write(2, "\n", 1);
  (void)w;
}

void on_signal(int sig) {
  save_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int run_one(const Bytes& in, const std::string& label) {
  g_current = &in;
  // Exactly sized heap copy so that an over-read lands outside the allocation.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[in.size() ? in.size() : 1]);
  if (!in.empty()) std::memcpy(copy.get(), in.data(), in.size());
  try {
    LLVMFuzzerTestOneInput(copy.get(), in.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz replay: %s: exception escaped: %s\n", label.c_str(), e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "fuzz replay: %s: unknown exception escaped\n", label.c_str());
    return 1;
  }
  return 0;
}

Bytes read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  uint64_t iterations = 100000, seed = 1;
  fs::path artifacts = ".";
  std::vector<fs::path> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--seconds" && has_value) seconds = std::atof(argv[++i]);
    else if (a == "--iterations" && has_value) iterations = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--seed" && has_value) seed = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--artifacts" && has_value) artifacts = argv[++i];
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "usage: %s [--seconds S] [--iterations N] [--seed X] "
                   "[--artifacts DIR] CORPUS_DIR_OR_FILE...\n", argv[0]);
      return 2;
    } else paths.emplace_back(a);
  }

  std::vector<std::pair<std::string, Bytes>> corpus;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) corpus.emplace_back(f.string(), read_file(f));
    } else if (fs::is_regular_file(p, ec)) {
      corpus.emplace_back(p.string(), read_file(p));
    } else {
      std::fprintf(stderr, "fuzz replay: %s: not a file or folder\n", p.string().c_str());
      return 2;
    }
  }
  if (corpus.empty()) corpus.emplace_back("<empty input>", Bytes{});

  for (int s : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) std::signal(s, on_signal);
#ifdef QLLM_REPLAY_ASAN
  __sanitizer_set_death_callback(save_current);  // sanitizer reports exit without a signal
#endif
  auto set_crash_path = [&](const std::string& name) {
    std::snprintf(g_crash_path, sizeof g_crash_path, "%s", (artifacts / name).c_str());
  };
  auto save = [&](const Bytes& b) {
    std::ofstream(g_crash_path, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    std::fprintf(stderr, "fuzz replay: input saved to %s\n", g_crash_path);
  };

  for (const auto& [name, bytes] : corpus) {
    set_crash_path("crash-corpus-" + fs::path(name).filename().string());
    if (run_one(bytes, name)) {
      save(bytes);
      return 1;
    }
  }
  std::printf("fuzz replay: %zu corpus inputs ok\n", corpus.size());

  std::vector<Bytes> pool;
  for (const auto& c : corpus) pool.push_back(c.second);
  const size_t n_seeds = pool.size();
  Rng rng{seed};
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t it = 0;
  for (; it < iterations; ++it) {
    if ((it & 255) == 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                                   .count() >= seconds)
      break;
    // Mostly seeds; sometimes a recent mutant, to reach inputs several steps away.
    const Bytes& base = pool[rng.below(4) == 0 ? rng.below(pool.size()) : rng.below(n_seeds)];
    Bytes m = mutate(base, pool, rng);
    if (m.size() > (1u << 20)) m.resize(1u << 20);
    set_crash_path("crash-" + std::to_string(seed) + "-" + std::to_string(it));
    if (run_one(m, "iteration " + std::to_string(it))) {
      save(m);
      return 1;
    }
    if (pool.size() < n_seeds + 256) pool.push_back(std::move(m));
    else pool[n_seeds + rng.below(256)] = std::move(m);
  }
  const double dt =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("fuzz replay: %llu mutations in %.1f s (seed %llu), no findings\n",
              static_cast<unsigned long long>(it), dt, static_cast<unsigned long long>(seed));
  return 0;
}
