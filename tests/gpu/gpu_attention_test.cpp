// kernels/attention_prefill and kernels/attention_decode against
// engine/cpu/attention.h paged_attention (fp32) on the same bf16 inputs:
//   * passes that mix prefill chunks (from position 0 and after earlier
//     chunks), decode rows and padding rows (sequence -1), in sequence order
//     or shuffled; sequences use shuffled rows of the block table, their
//     blocks are shuffled and non-contiguous, unused table entries are -1
//     (reading one raises the error flag, which must stay 0);
//   * GQA groups of 1, 4 and 8 (and 32 q heads per kv head), head_dim 32,
//     64, 80, 128, 256, sliding windows, strided q and out;
//   * long contexts: decode rows at 4096 positions over many splits, a
//     prefill chunk after 2048 cached positions;
//   * every output of an active row within bf16 tolerance (per head: ||got -
//     want|| <= 1e-2 ||want||), every other byte of out still poison; the
//     decode workspace is poisoned too;
//   * a bad sequence index raises the flag and leaves its row untouched;
//   * one captured device-launch graph (prefill + decode) replayed over steps
//     with different rows, positions, sequences, tables and cache contents.
#include "engine/cpu/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/attention_prefill.h"
#include "kernels/device_info.h"
#include "tests/gpu/gpu_test_buffers.h"
#include "tests/gpu_test_util.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

using namespace qllm;
using namespace qllm::test;

namespace {

struct Dims {
  int heads, kv_heads, hd;
  int window = 0;
  int qd() const { return heads * hd; }
  int kvd() const { return kv_heads * hd; }
};

struct Capacity {
  int rows_cap, seqs_cap, max_blocks, num_blocks;
  int block_size = 16;
  int ldq_pad = 0, ldo_pad = 0;  // extra columns of q and out
};

// One sequence of a pass: `rows` query rows at positions start.. (K/V of
// [0, start + rows) in the cache).
struct SeqSpec {
  int start, rows;
};

// A step: host inputs, shaped to the capacity.
struct Step {
  int n_rows = 0;
  std::vector<int32_t> pos, seq, tables;
  Bf16Values q, kc, vc;
};

int sm_count() {
  const auto r = cuda::query_devices();
  return r.devices.empty() ? 1 : r.devices[0].sm_count;
}

// Builds a step: sequences on shuffled table rows and shuffled blocks, rows
// in sequence order with `pad` padding rows inserted at random places (or all
// shuffled), rows past the count with plausible metadata (never to be read).
Step make_step(const Dims& d, const Capacity& c, const std::vector<SeqSpec>& specs, int pad, bool shuffle,
               Rng& rng) {
  Step s;
  const int64_t ldq = d.qd() + c.ldq_pad;
  const int64_t slots = int64_t(c.num_blocks) * c.block_size;
  std::vector<int32_t> seq_ids(size_t(c.seqs_cap)), blocks(size_t(c.num_blocks));
  std::iota(seq_ids.begin(), seq_ids.end(), 0);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(seq_ids.begin(), seq_ids.end(), rng.engine());
  std::shuffle(blocks.begin(), blocks.end(), rng.engine());
  if (specs.size() > seq_ids.size()) throw std::invalid_argument("more sequences than seqs_cap");
  s.tables.assign(size_t(c.seqs_cap) * size_t(c.max_blocks), -1);
  size_t next_block = 0;
  std::vector<std::pair<int32_t, int32_t>> rows;  // (seq, pos)
  for (size_t i = 0; i < specs.size(); ++i) {
    const int id = seq_ids[i], len = specs[i].start + specs[i].rows;
    const int nb = (len + c.block_size - 1) / c.block_size;
    if (nb > c.max_blocks || next_block + size_t(nb) > blocks.size())
      throw std::invalid_argument("the capacity does not hold sequence " + std::to_string(i));
    for (int b = 0; b < nb; ++b) s.tables[size_t(id) * size_t(c.max_blocks) + size_t(b)] = blocks[next_block++];
    for (int r = 0; r < specs[i].rows; ++r) rows.emplace_back(id, specs[i].start + r);
  }
  for (int p = 0; p < pad; ++p) {
    const auto at = rows.begin() + std::ptrdiff_t(rng.integer(0, int64_t(rows.size())));
    rows.insert(at, {-1, int32_t(rng.integer(0, 5000))});
  }
  if (shuffle) std::shuffle(rows.begin(), rows.end(), rng.engine());
  if (int(rows.size()) > c.rows_cap) throw std::invalid_argument("more rows than rows_cap");
  s.n_rows = int(rows.size());
  s.pos.assign(size_t(c.rows_cap), 0);
  s.seq.assign(size_t(c.rows_cap), specs.empty() ? 0 : seq_ids[0]);
  for (size_t t = 0; t < rows.size(); ++t) s.seq[t] = rows[t].first, s.pos[t] = rows[t].second;
  s.q = random_bf16(rng, size_t(c.rows_cap) * size_t(ldq), 6.0f);  // scores of a few units: peaked softmax
  s.kc = random_bf16(rng, size_t(slots) * size_t(d.kvd()));
  s.vc = random_bf16(rng, size_t(slots) * size_t(d.kvd()));
  return s;
}

// paged_attention over the active rows: [n_rows, qd].
std::vector<float> reference(const Dims& d, const Capacity& c, const Step& s) {
  cpu::PagedKv kv(1, c.num_blocks, c.block_size, d.kvd());
  kv.k = s.kc.f32;
  kv.v = s.vc.f32;
  std::vector<std::vector<int32_t>> tables(size_t(c.seqs_cap));
  for (int i = 0; i < c.seqs_cap; ++i)
    tables[size_t(i)].assign(s.tables.begin() + std::ptrdiff_t(i) * c.max_blocks,
                             s.tables.begin() + std::ptrdiff_t(i + 1) * c.max_blocks);
  const size_t ldq = size_t(d.qd() + c.ldq_pad), n = size_t(s.n_rows), qd = size_t(d.qd());
  std::vector<float> q(n * qd), out(n * qd, NAN);
  for (size_t t = 0; t < n; ++t) std::copy_n(s.q.f32.begin() + std::ptrdiff_t(t * ldq), qd, q.begin() + std::ptrdiff_t(t * qd));
  const std::vector<int> pos(s.pos.begin(), s.pos.begin() + std::ptrdiff_t(n));
  const std::vector<int> seq(s.seq.begin(), s.seq.begin() + std::ptrdiff_t(n));
  cpu::paged_attention(q.data(), kv, 0, pos, seq, tables, {d.heads, d.kv_heads, d.hd, d.window}, out.data());
  return out;
}

// Device buffers at a fixed capacity, and the two ops' arguments over them.
struct Harness {
  Dims d;
  Capacity c;
  int splits;
  DeviceBuffer<uint16_t> q, out_prefill, out_decode, kc, vc;
  DeviceBuffer<int32_t> pos, seq, tables, rows = device_int(0), error = device_int(0);
  DeviceBuffer<uint8_t> ws;

  Harness(const Dims& dims, const Capacity& cap, int num_splits)
      : d(dims), c(cap), splits(num_splits), q(size_t(cap.rows_cap) * size_t(dims.qd() + cap.ldq_pad)),
        out_prefill(size_t(cap.rows_cap) * size_t(dims.qd() + cap.ldo_pad)), out_decode(out_prefill.size()),
        kc(size_t(cap.num_blocks) * size_t(cap.block_size) * size_t(dims.kvd())), vc(kc.size()),
        pos(size_t(cap.rows_cap)), seq(size_t(cap.rows_cap)), tables(size_t(cap.seqs_cap) * size_t(cap.max_blocks)),
        ws(std::max<size_t>(16, cuda::attention_decode_workspace_bytes(cap.rows_cap, dims.heads, dims.hd, num_splits))) {}

  cuda::PagedAttention args(DeviceBuffer<uint16_t>& out) const {
    cuda::PagedAttention a;
    a.q = bf16_ptr(q);
    a.ldq = d.qd() + c.ldq_pad;
    a.out = bf16_ptr(out);
    a.ldo = d.qd() + c.ldo_pad;
    a.k_cache = bf16_ptr(kc);
    a.v_cache = bf16_ptr(vc);
    a.cache_slots = int64_t(c.num_blocks) * c.block_size;
    a.block_size = c.block_size;
    a.d_tables = tables.get();
    a.seqs_cap = c.seqs_cap;
    a.max_blocks_per_seq = c.max_blocks;
    a.d_rows = rows.get();
    a.d_pos = pos.get();
    a.d_seq = seq.get();
    a.rows_cap = c.rows_cap;
    a.heads = d.heads;
    a.kv_heads = d.kv_heads;
    a.head_dim = d.hd;
    a.window = d.window;
    a.d_error = error.get();
    return a;
  }

  // Uploads a step and poisons the outputs and the workspace.
  void load(const Step& s) {
    q.upload(s.q.bits);
    kc.upload(s.kc.bits);
    vc.upload(s.vc.bits);
    pos.upload(s.pos);
    seq.upload(s.seq);
    tables.upload(s.tables);
    write_int(rows, s.n_rows);
    write_int(error, 0);
    out_prefill.poison();
    out_decode.poison();
    ws.poison();
  }

  void launch(cudaStream_t stream) {
    cuda::attention_prefill(args(out_prefill), stream);
    cuda::attention_decode(args(out_decode), splits, ws.get(), ws.bytes(), stream);
  }

  // Every active row's heads against the reference; every other byte poison.
  void check(const Step& s, const std::vector<float>& want, const DeviceBuffer<uint16_t>& out,
             const std::string& what) const {
    const auto got = out.download();
    const size_t ldo = size_t(d.qd() + c.ldo_pad), qd = size_t(d.qd()), hd = size_t(d.hd);
    const uint16_t poison = poison_value<uint16_t>();
    size_t bad = 0, untouched_bad = 0;
    double worst = 0;
    std::string first;
    for (size_t t = 0; t < size_t(c.rows_cap); ++t) {
      const bool active = t < size_t(s.n_rows) && s.seq[t] >= 0;
      for (size_t col = active ? qd : 0; col < ldo; ++col)
        if (got[t * ldo + col] != poison) ++untouched_bad;
      if (!active) continue;
      for (size_t h = 0; h < size_t(d.heads); ++h) {
        double err = 0, ref = 0;
        bool finite = true;
        for (size_t i = 0; i < hd; ++i) {
          const double g = bf16_to_f32(got[t * ldo + h * hd + i]), w = want[t * qd + h * hd + i];
          finite = finite && std::isfinite(g);
          err += (g - w) * (g - w);
          ref += w * w;
        }
        const double rel = std::sqrt(err) / std::max(std::sqrt(ref), 1e-30);
        worst = std::max(worst, finite ? rel : INFINITY);
        if (!finite || rel > 1e-2) {
          if (bad++ == 0)
            first = "row " + std::to_string(t) + " (seq " + std::to_string(s.seq[t]) + ", pos " +
                    std::to_string(s.pos[t]) + ") head " + std::to_string(h) + ": relative error " +
                    std::to_string(rel);
        }
      }
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " (row, head) outputs off; first: " << first;
    EXPECT_EQ(untouched_bad, 0u) << what << ": " << untouched_bad
                                 << " elements written outside the active rows' heads";
    EXPECT_LE(worst, 1e-2) << what;
  }
};

struct Case {
  Dims d;
  Capacity c;
  std::vector<SeqSpec> specs;
  int pad = 2;
  bool shuffle = false;
  int splits = 0;  // 0: attention_decode_splits
};

void run_case(const Case& k, uint64_t seed, const std::string& name) {
  SCOPED_TRACE(name + ": heads " + std::to_string(k.d.heads) + "/" + std::to_string(k.d.kv_heads) + " hd " +
               std::to_string(k.d.hd) + " window " + std::to_string(k.d.window));
  Rng rng(seed);
  const int max_len = k.c.max_blocks * k.c.block_size;
  const int splits = k.splits > 0 ? k.splits
                                  : cuda::attention_decode_splits(k.c.rows_cap, k.d.heads, k.d.kv_heads, max_len,
                                                                  sm_count());
  Harness h(k.d, k.c, splits);
  const Step s = make_step(k.d, k.c, k.specs, k.pad, k.shuffle, rng);
  const auto want = reference(k.d, k.c, s);
  h.load(s);
  h.launch(nullptr);
  QLLM_CUDA_CHECK(cudaDeviceSynchronize());
  h.check(s, want, h.out_prefill, "attention_prefill");
  h.check(s, want, h.out_decode, "attention_decode (" + std::to_string(splits) + " splits)");
  EXPECT_EQ(read_int(h.error), 0) << "error flag";
}

// A pass of three prefill chunks (one from position 0, two after cached
// positions), three decode rows and padding.
std::vector<SeqSpec> mixed_specs() { return {{0, 37}, {100, 70}, {517, 1}, {3, 1}, {64, 64}, {1000, 1}}; }

TEST(GpuAttention, MixedPassMatchesCpu) {
  QLLM_REQUIRE_GPU();
  const Capacity c{200, 9, 70, 600};
  run_case({{8, 2, 128}, c, mixed_specs(), 3, false}, 1, "mixed, in order");
  run_case({{8, 2, 128}, c, mixed_specs(), 3, true}, 2, "mixed, rows shuffled");
}

TEST(GpuAttention, GqaGroupsAndHeadDims) {
  QLLM_REQUIRE_GPU();
  const Capacity c{140, 8, 40, 300};
  const std::vector<SeqSpec> specs{{0, 20}, {45, 30}, {300, 1}, {17, 1}, {130, 33}};
  int seed = 10;
  for (const Dims d : {Dims{8, 8, 64}, Dims{8, 2, 64}, Dims{16, 2, 64}, Dims{16, 16, 128}, Dims{32, 4, 128},
                       Dims{32, 8, 128}, Dims{32, 1, 64}, Dims{4, 2, 16}, Dims{4, 2, 32}, Dims{8, 2, 80},
                       Dims{4, 1, 256}, Dims{6, 3, 96}})
    run_case({d, c, specs, 2, false}, uint64_t(seed++), "gqa/head_dim");
}

TEST(GpuAttention, SlidingWindow) {
  QLLM_REQUIRE_GPU();
  const Capacity c{160, 6, 60, 400};
  const std::vector<SeqSpec> specs{{0, 50}, {90, 60}, {700, 1}, {5, 1}, {31, 2}};
  for (int w : {1, 7, 32, 64, 100, 4096}) run_case({{8, 2, 64, w}, c, specs, 1, w % 2 == 1}, uint64_t(w), "window");
}

TEST(GpuAttention, StridedQAndOut) {
  QLLM_REQUIRE_GPU();
  Capacity c{200, 8, 50, 400};
  c.ldq_pad = 16;  // q inside a wider (e.g. fused QKV) row
  c.ldo_pad = 8;
  c.block_size = 32;
  run_case({{8, 2, 128}, c, mixed_specs(), 2, true}, 40, "strided");
}

TEST(GpuAttention, LongContextDecodeSplits) {
  QLLM_REQUIRE_GPU();
  const Capacity c{8, 8, 260, 1100};
  // Lengths around split and tile boundaries, and 4096.
  const std::vector<SeqSpec> specs{{4095, 1}, {3999, 1}, {255, 1}, {256, 1}, {1023, 1}, {0, 1}, {64, 1}};
  run_case({{8, 2, 128}, c, specs, 1, false}, 50, "long decode, default splits");
  for (int splits : {1, 3, 16, 64}) {
    Case k{{8, 2, 128}, c, specs, 1, true};
    k.splits = splits;
    run_case(k, uint64_t(51 + splits), "long decode, " + std::to_string(splits) + " splits");
  }
  run_case({{32, 8, 128, 1000}, c, specs, 0, false}, 60, "long decode, window 1000");
}

TEST(GpuAttention, LongPrefillAfterCachedChunks) {
  QLLM_REQUIRE_GPU();
  const Capacity c{600, 4, 170, 400};
  // 256 rows after 2048 cached positions, a 300-row first chunk, a decode row.
  run_case({{4, 1, 128}, c, {{2048, 256}, {0, 300}, {2500, 1}}, 2, false}, 70, "long prefill");
}

TEST(GpuAttention, NothingActive) {
  QLLM_REQUIRE_GPU();
  const Capacity c{16, 4, 8, 40};
  run_case({{8, 2, 64}, c, {}, 5, false}, 80, "only padding rows");
  run_case({{8, 2, 64}, c, {}, 0, false}, 81, "no rows");
}

TEST(GpuAttention, BadSequenceRaisesTheFlagAndSkipsTheRow) {
  QLLM_REQUIRE_GPU();
  const Dims d{8, 2, 64};
  const Capacity c{20, 4, 8, 40};
  Rng rng(90);
  Harness h(d, c, 2);
  Step s = make_step(d, c, {{0, 5}, {10, 1}}, 0, false, rng);
  auto want = reference(d, c, s);
  s.seq[2] = c.seqs_cap;  // outside the table: the row must be skipped
  h.load(s);
  h.launch(nullptr);
  EXPECT_EQ(read_int(h.error), 1);
  s.seq[2] = -1;  // what the check expects: row 2 untouched
  h.check(s, want, h.out_prefill, "attention_prefill");
  h.check(s, want, h.out_decode, "attention_decode");
}

TEST(GpuAttention, OneGraphServesStepsWithDifferentMetadata) {
  QLLM_REQUIRE_GPU();
  const Dims d{8, 2, 128};
  const Capacity c{48, 6, 40, 240};
  const int splits = cuda::attention_decode_splits(c.rows_cap, d.heads, d.kv_heads, c.max_blocks * c.block_size,
                                                   sm_count());
  Harness h(d, c, splits);
  Stream stream;
  Rng rng(100);
  h.load(make_step(d, c, {{0, 8}}, 0, false, rng));
  CapturedGraph graph(stream.get(), [&](cudaStream_t s) { h.launch(s); });
  const std::vector<std::vector<SeqSpec>> steps{
      {{0, 20}, {100, 1}, {33, 10}},
      {{20, 1}, {101, 1}, {43, 1}, {0, 30}},
      {{600, 1}},
      {},
      {{21, 17}, {102, 1}, {44, 1}, {30, 1}, {250, 12}, {7, 1}},
  };
  int i = 0;
  for (const auto& specs : steps) {
    SCOPED_TRACE("replay " + std::to_string(i++));
    const Step s = make_step(d, c, specs, i % 3, i % 2 == 0, rng);
    const auto want = reference(d, c, s);
    h.load(s);
    graph.replay(stream.get());
    h.check(s, want, h.out_prefill, "attention_prefill (graph)");
    h.check(s, want, h.out_decode, "attention_decode (graph)");
    EXPECT_EQ(read_int(h.error), 0);
  }
}

}  // namespace
