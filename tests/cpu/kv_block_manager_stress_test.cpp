// Randomized stress test of the KV block manager against a model.
//
// The test plays the engine: it keeps a simulated KV memory of
// num_blocks * block_size slots and writes, for position p of a sequence, a
// value standing for its KV: a hash of the sequence's token ids 0..p (KV
// depends on the whole prefix). It writes through slot_of(), performs the
// block copies append() returns, and poisons the slots of reserved positions
// that are not computed yet. After every operation it checks the manager's
// invariants and reads every computed position of every sequence back: a
// missed copy-on-write, a write into a shared block, a block handed out twice
// or a prefix-cache hit on other content shows up as a wrong value.
#include "engine/common/error.h"
#include "engine/kv/block_manager.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace qllm;

namespace {

constexpr uint64_t kPoison = 0xdeadbeefdeadbeefULL;

uint64_t kv_value(uint64_t prev, int32_t token) {
  uint64_t x = prev ^ (uint64_t(uint32_t(token)) + 0x9e3779b97f4a7c15ULL);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return x;
}

struct ModelSeq {
  std::vector<int32_t> ids;  // token id of every reserved position
  std::vector<uint64_t> kv;  // expected KV value of every reserved position
  int computed = 0;

  void push(int32_t id) {
    kv.push_back(kv_value(kv.empty() ? 0 : kv.back(), id));
    ids.push_back(id);
  }
};

struct StressConfig {
  int num_blocks;
  int block_size;
  bool prefix_caching;
  uint32_t seed;
  bool colliding_hash = false;  // every key in one of two buckets
};

uint64_t colliding_hash(CacheId parent, std::span<const int32_t> tokens) {
  return (parent + uint64_t(tokens.empty() ? 0 : uint32_t(tokens[0]))) & 1;
}

std::string name(const StressConfig& c) {
  return "blocks" + std::to_string(c.num_blocks) + "_bs" + std::to_string(c.block_size) +
         (c.prefix_caching ? "_cache" : "_nocache") + "_seed" + std::to_string(c.seed) +
         (c.colliding_hash ? "_collide" : "");
}

class Stress {
 public:
  explicit Stress(const StressConfig& c)
      : c_(c),
        bm_(c.num_blocks, c.block_size, c.prefix_caching,
            c.colliding_hash ? colliding_hash : default_content_hash),
        mem_(size_t(c.num_blocks) * size_t(c.block_size), kPoison),
        rng_(c.seed) {
    // A few documents that prompts start from, so that prefixes are shared.
    for (int d = 0; d < 4; ++d) {
      std::vector<int32_t> doc;
      for (int i = 0; i < 6 * c.block_size + 5; ++i) doc.push_back(token());
      docs_.push_back(doc);
    }
  }

  void run(int ops) {
    for (int op = 0; op < ops; ++op) {
      const int r = uniform(0, 99);
      if (r < 20) new_prompt();
      else if (r < 26) new_counted();
      else if (r < 50) compute();
      else if (r < 72) append();
      else if (r < 80) fork();
      else free(uniform(0, 19) == 0);
      bm_.check_invariants();
      check_against_model();
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "after operation " << op;
        return;
      }
    }
    while (!model_.empty()) {
      bm_.free(model_.begin()->first);
      model_.erase(model_.begin());
    }
    bm_.check_invariants();
    EXPECT_EQ(bm_.num_seqs(), 0);
    EXPECT_EQ(bm_.num_free_blocks(), c_.num_blocks);  // no leak
    EXPECT_DOUBLE_EQ(bm_.usage(), 0.0);
    if (!c_.prefix_caching) {
      EXPECT_EQ(bm_.num_cached_blocks(), 0);
    }
  }

  int64_t allocations() const { return allocations_; }
  int64_t refusals() const { return refusals_; }
  int64_t copies() const { return copies_; }
  int64_t forks() const { return forks_; }
  PrefixCacheStats cache_stats() const { return bm_.prefix_cache_stats(); }

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  int32_t token() { return int32_t(uniform(0, 3)); }  // few ids: equal content happens

  // A random live sequence, or model_.end().
  std::map<SeqId, ModelSeq>::iterator pick() {
    if (model_.empty()) return model_.end();
    return std::next(model_.begin(), uniform(0, int(model_.size()) - 1));
  }

  void poison_pending(SeqId id, const ModelSeq& m) {
    for (int p = m.computed; p < int(m.ids.size()); ++p) mem_[size_t(bm_.slot_of(id, p))] = kPoison;
  }

  void new_prompt() {
    std::vector<int32_t> prompt = docs_[size_t(uniform(0, int(docs_.size()) - 1))];
    prompt.resize(size_t(uniform(1, int(prompt.size()))));
    if (uniform(0, 2) == 0)  // diverge somewhere
      for (size_t i = size_t(uniform(0, int(prompt.size()) - 1)); i < prompt.size(); ++i)
        prompt[i] = token();
    const SeqId id = next_id_++;
    if (!bm_.can_allocate_prompt(prompt)) {
      ++refusals_;
      EXPECT_THROW((void)bm_.allocate_prompt(id, prompt), Error);
      EXPECT_FALSE(bm_.contains(id));
      return;
    }
    const int hit = bm_.allocate_prompt(id, prompt);
    ++allocations_;
    EXPECT_EQ(hit % c_.block_size, 0);
    EXPECT_LT(hit, int(prompt.size()));
    if (!c_.prefix_caching) {
      EXPECT_EQ(hit, 0);
    }
    ModelSeq m;
    for (int32_t t : prompt) m.push(t);
    m.computed = hit;  // the hit positions must already hold the right values
    poison_pending(id, m);
    model_.emplace(id, std::move(m));
  }

  void new_counted() {
    const int n = uniform(0, 3 * c_.block_size);
    const SeqId id = next_id_++;
    if (!bm_.can_allocate(n)) {
      ++refusals_;
      EXPECT_THROW(bm_.allocate(id, n), Error);
      return;
    }
    bm_.allocate(id, n);
    ++allocations_;
    ModelSeq m;
    for (int i = 0; i < n; ++i) m.push(token());
    poison_pending(id, m);
    model_.emplace(id, std::move(m));
  }

  // A forward pass over some reserved positions: write their KV, report them.
  void compute() {
    auto it = pick();
    if (it == model_.end()) return;
    auto& [id, m] = *it;
    const int pending = int(m.ids.size()) - m.computed;
    if (pending == 0) return;
    const int n = uniform(1, pending);
    for (int p = m.computed; p < m.computed + n; ++p)
      mem_[size_t(bm_.slot_of(id, p))] = m.kv[size_t(p)];
    bm_.mark_computed(id, std::span(m.ids).subspan(size_t(m.computed), size_t(n)));
    m.computed += n;
  }

  void append() {
    auto it = pick();
    if (it == model_.end()) return;
    auto& [id, m] = *it;
    const int n = uniform(0, 2 * c_.block_size);
    if (!bm_.can_append(id, n)) {
      ++refusals_;
      EXPECT_THROW((void)bm_.append(id, n), Error);
      EXPECT_EQ(bm_.num_tokens(id), int(m.ids.size()));
      return;
    }
    const std::vector<BlockCopy> copies = bm_.append(id, n);
    EXPECT_LE(copies.size(), 1u);
    const size_t bs = size_t(c_.block_size);
    for (const BlockCopy& cp : copies) {
      EXPECT_GT(bm_.refcount(cp.src), 0);  // still held by someone else
      EXPECT_EQ(bm_.refcount(cp.dst), 1);
      for (size_t o = 0; o < bs; ++o) mem_[size_t(cp.dst) * bs + o] = mem_[size_t(cp.src) * bs + o];
      ++copies_;
    }
    for (int i = 0; i < n; ++i) m.push(token());
    poison_pending(id, m);
  }

  void fork() {
    auto it = pick();
    if (it == model_.end()) return;
    const SeqId child = next_id_++;
    if (it->second.computed != int(it->second.ids.size())) {
      EXPECT_THROW(bm_.fork(it->first, child), Error);
      return;
    }
    bm_.fork(it->first, child);
    ++forks_;
    model_.emplace(child, it->second);
  }

  void free(bool twice) {
    auto it = pick();
    if (it == model_.end()) return;
    const SeqId id = it->first;
    bm_.free(id);
    model_.erase(it);
    if (twice) {
      EXPECT_THROW(bm_.free(id), Error);
    }
  }

  void check_against_model() {
    ASSERT_EQ(bm_.num_seqs(), int(model_.size()));
    std::vector<char> held(size_t(c_.num_blocks), 0);
    int used = 0;
    for (const auto& [id, m] : model_) {
      ASSERT_EQ(bm_.num_tokens(id), int(m.ids.size())) << "sequence " << id;
      ASSERT_EQ(bm_.num_computed(id), m.computed) << "sequence " << id;
      const auto table = bm_.block_table(id);
      const int bs = c_.block_size;
      for (int p = 0; p < int(m.ids.size()); ++p)
        ASSERT_EQ(bm_.slot_of(id, p), int64_t(table[size_t(p / bs)]) * bs + p % bs);
      for (int p = 0; p < m.computed; ++p)
        ASSERT_EQ(mem_[size_t(bm_.slot_of(id, p))], m.kv[size_t(p)])
            << "sequence " << id << " position " << p << " of " << m.computed;
      for (BlockId b : table) used += held[size_t(b)]++ == 0 ? 1 : 0;
    }
    ASSERT_EQ(bm_.num_free_blocks(), c_.num_blocks - used);
    ASSERT_DOUBLE_EQ(bm_.usage(), double(used) / c_.num_blocks);
  }

  StressConfig c_;
  BlockManager bm_;
  std::vector<uint64_t> mem_;  // simulated KV memory, one value per slot
  std::mt19937 rng_;
  std::vector<std::vector<int32_t>> docs_;
  std::map<SeqId, ModelSeq> model_;
  SeqId next_id_ = 1;
  int64_t allocations_ = 0, refusals_ = 0, copies_ = 0, forks_ = 0;
};

class KvBlockManagerStress : public ::testing::TestWithParam<StressConfig> {};

TEST_P(KvBlockManagerStress, RandomOperationsMatchTheModel) {
  const StressConfig& c = GetParam();
  Stress s(c);
  s.run(20000);
  std::printf("%s: %lld allocations, %lld refusals, %lld forks, %lld copies, %lld of %lld "
              "prompt tokens hit, %lld evictions\n",
              name(c).c_str(), (long long)s.allocations(), (long long)s.refusals(),
              (long long)s.forks(), (long long)s.copies(), (long long)s.cache_stats().hit_tokens,
              (long long)s.cache_stats().queried_tokens, (long long)s.cache_stats().evicted_blocks);
  // The run exercised every path, not just the easy ones.
  EXPECT_GT(s.allocations(), 100);
  EXPECT_GT(s.refusals(), 10);
  EXPECT_GT(s.forks(), 10);
  if (c.block_size > 1) {  // no partial blocks otherwise
    EXPECT_GT(s.copies(), 0);
  }
  if (c.prefix_caching) {
    EXPECT_GT(s.cache_stats().hit_tokens, 0);
    EXPECT_GT(s.cache_stats().evicted_blocks, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, KvBlockManagerStress,
    ::testing::Values(StressConfig{24, 4, false, 1}, StressConfig{24, 4, true, 2},
                      StressConfig{40, 1, true, 3}, StressConfig{40, 1, false, 4},
                      StressConfig{12, 16, true, 5}, StressConfig{64, 3, true, 6},
                      StressConfig{6, 2, true, 7}, StressConfig{3, 4, true, 8},
                      StressConfig{24, 4, true, 9, true}, StressConfig{40, 1, true, 10, true}),
    [](const ::testing::TestParamInfo<StressConfig>& p) { return name(p.param); });

}  // namespace
