// KV block manager with prefix caching: hits on computed full blocks only,
// exact matching along the chain, LRU eviction of freed cached blocks.
#include "engine/common/error.h"
#include "engine/kv/block_manager.h"

#include <gtest/gtest.h>

#include <vector>

using namespace qllm;

namespace {

std::vector<int32_t> ids(std::initializer_list<int32_t> v) { return v; }

std::vector<int32_t> iota_ids(int n, int32_t first) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = first + i;
  return v;
}

std::vector<BlockId> table(const BlockManager& bm, SeqId seq) {
  const auto t = bm.block_table(seq);
  return {t.begin(), t.end()};
}

// Allocates prompt for seq, checks the cache hit, computes the rest.
void run_prompt(BlockManager& bm, SeqId seq, const std::vector<int32_t>& prompt, int expect_hit) {
  ASSERT_TRUE(bm.can_allocate_prompt(prompt));
  const int hit = bm.allocate_prompt(seq, prompt);
  EXPECT_EQ(hit, expect_hit) << "sequence " << seq;
  EXPECT_EQ(bm.num_computed(seq), hit);
  bm.mark_computed(seq, std::span(prompt).subspan(size_t(hit)));
  bm.check_invariants();
}

}  // namespace

TEST(KvPrefixCache, ReusesComputedFullBlocks) {
  BlockManager bm(16, 4, true);
  const auto a = iota_ids(10, 0);  // blocks [0..3] [4..7], partial [8, 9]
  run_prompt(bm, 1, a, 0);
  run_prompt(bm, 2, a, 8);  // two full blocks; the partial one is never shared
  const auto t1 = table(bm, 1), t2 = table(bm, 2);
  EXPECT_EQ(t2[0], t1[0]);
  EXPECT_EQ(t2[1], t1[1]);
  EXPECT_NE(t2[2], t1[2]);
  EXPECT_EQ(bm.refcount(t1[0]), 2);
  EXPECT_EQ(bm.num_free_blocks(), 16 - 4);

  // Sharing only the first block.
  auto b = a;
  b[5] = 99;
  run_prompt(bm, 3, b, 4);
  EXPECT_EQ(table(bm, 3)[0], t1[0]);
  EXPECT_EQ(bm.refcount(t1[0]), 3);

  // A prompt of exactly two full blocks reuses only one: its last position
  // must be computed to produce logits.
  run_prompt(bm, 4, iota_ids(8, 0), 4);
  // One token longer: both.
  run_prompt(bm, 5, iota_ids(9, 0), 8);
  // Shorter than one block: nothing to reuse.
  run_prompt(bm, 6, iota_ids(4, 0), 0);

  const PrefixCacheStats st = bm.prefix_cache_stats();
  EXPECT_EQ(st.queried_tokens, 10 + 10 + 10 + 8 + 9 + 4);
  EXPECT_EQ(st.hit_tokens, 0 + 8 + 4 + 4 + 8 + 0);
  EXPECT_EQ(st.evicted_blocks, 0);
}

TEST(KvPrefixCache, MatchesWholePrefixesNotSingleBlocks) {
  BlockManager bm(16, 2, true);
  run_prompt(bm, 1, ids({1, 2, 3, 4, 5}), 0);
  // Same second block after another first block: no hit at all.
  run_prompt(bm, 2, ids({9, 9, 3, 4, 5}), 0);
  EXPECT_NE(table(bm, 2)[1], table(bm, 1)[1]);
  // Repeated block content at another depth is another key.
  run_prompt(bm, 3, ids({1, 2, 1, 2, 7}), 2);
  EXPECT_EQ(table(bm, 3)[0], table(bm, 1)[0]);
  EXPECT_NE(table(bm, 3)[1], table(bm, 1)[0]);
}

TEST(KvPrefixCache, OnlyComputedBlocksAreHit) {
  BlockManager bm(16, 4, true);
  const auto a = iota_ids(12, 0);
  ASSERT_EQ(bm.allocate_prompt(1, a), 0);
  EXPECT_EQ(bm.allocate_prompt(2, a), 0);  // nothing written yet
  bm.mark_computed(1, std::span(a).first(6));  // block 0 complete, block 1 half
  EXPECT_EQ(bm.allocate_prompt(3, a), 4);
  bm.mark_computed(1, std::span(a).subspan(6, 2));  // block 1 complete
  EXPECT_EQ(bm.allocate_prompt(4, a), 8);
  // Sequence 2 computes the same content into its own blocks: its first two
  // stay uncached (that content is cached already) and go back to the free
  // list; its third block is new content and stays cached.
  bm.mark_computed(2, a);
  bm.check_invariants();
  const BlockId third = table(bm, 2)[2];
  bm.free(2);
  EXPECT_EQ(bm.num_cached_blocks(), 1);
  EXPECT_EQ(bm.refcount(third), 0);
  run_prompt(bm, 5, iota_ids(13, 0), 12);
  EXPECT_EQ(table(bm, 5)[2], third);
  bm.free(5);
  EXPECT_EQ(bm.num_free_blocks(), 16 - 3 - 2 - 1);
  bm.check_invariants();
}

TEST(KvPrefixCache, DecodeFilledBlocksAreCachedToo) {
  BlockManager bm(16, 4, true);
  run_prompt(bm, 1, iota_ids(3, 0), 0);
  // Decode one token at a time: reserve, then report the computed id.
  for (int32_t t = 3; t < 9; ++t) {
    EXPECT_TRUE(bm.append(1, 1).empty());
    bm.mark_computed(1, ids({t}));
  }
  bm.check_invariants();
  // The conversation continues as a new prompt: the first two blocks hit.
  run_prompt(bm, 2, iota_ids(11, 0), 8);
}

TEST(KvPrefixCache, ForkedChildrenPublishTheirOwnBlocks) {
  BlockManager bm(16, 4, true);
  run_prompt(bm, 1, iota_ids(6, 0), 0);
  bm.fork(1, 2);
  for (SeqId s : {1, 2}) {
    EXPECT_EQ(bm.append(s, 2).size(), s == 1 ? 1u : 0u);  // the first writer copies
    bm.mark_computed(s, ids({int32_t(10 * s), int32_t(10 * s + 1)}));
  }
  bm.check_invariants();
  auto p1 = iota_ids(6, 0), p2 = iota_ids(6, 0);
  p1.insert(p1.end(), {10, 11, 0});
  p2.insert(p2.end(), {20, 21, 0});
  run_prompt(bm, 3, p1, 8);
  run_prompt(bm, 4, p2, 8);
  EXPECT_EQ(table(bm, 3)[1], table(bm, 1)[1]);
  EXPECT_EQ(table(bm, 4)[1], table(bm, 2)[1]);
}

TEST(KvPrefixCache, FreedBlocksStayCachedUntilEvictedLeastRecentFirst) {
  BlockManager bm(4, 2, true);
  run_prompt(bm, 1, ids({1, 2, 3, 4, 5}), 0);  // blocks 0 [1 2], 1 [3 4], 2 [5]
  EXPECT_EQ(table(bm, 1), (std::vector<BlockId>{0, 1, 2}));
  bm.free(1);
  bm.check_invariants();
  EXPECT_EQ(bm.num_free_blocks(), 4);  // evictable blocks count as free
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.0);

  // Free blocks are used before any cached block is evicted.
  bm.allocate(2, 4);  // blocks 2 and 3
  EXPECT_EQ(table(bm, 2), (std::vector<BlockId>{2, 3}));
  EXPECT_EQ(bm.num_cached_blocks(), 2);
  EXPECT_EQ(bm.prefix_cache_stats().evicted_blocks, 0);

  // The tail of the freed sequence goes first: [3 4] is evicted, [1 2] kept.
  bm.allocate(3, 1);
  EXPECT_EQ(table(bm, 3), (std::vector<BlockId>{1}));
  EXPECT_EQ(bm.prefix_cache_stats().evicted_blocks, 1);
  bm.check_invariants();
  // Block 0 is the only one left: a prompt hitting it cannot also take it.
  EXPECT_FALSE(bm.can_allocate_prompt(ids({1, 2, 3})));
  EXPECT_TRUE(bm.can_allocate_prompt(ids({1, 2})));  // no hit: would evict it
  bm.free(3);
  run_prompt(bm, 4, ids({1, 2, 3}), 2);  // revives block 0 from the LRU list
  EXPECT_EQ(table(bm, 4), (std::vector<BlockId>{0, 1}));
  EXPECT_EQ(bm.num_cached_blocks(), 0);
  EXPECT_EQ(bm.refcount(0), 1);
}

TEST(KvPrefixCache, ReuseMakesABlockRecent) {
  BlockManager bm(4, 2, true);
  run_prompt(bm, 1, ids({1, 2, 9}), 0);  // [1 2] in block 0
  bm.free(1);
  run_prompt(bm, 2, ids({3, 4, 9}), 0);  // [3 4] in block 1
  bm.free(2);
  EXPECT_EQ(bm.num_cached_blocks(), 2);  // least recent first: 0, 1
  run_prompt(bm, 3, ids({1, 2, 5}), 2);
  bm.free(3);  // now 1, 0
  bm.allocate(4, 6);  // both free blocks, then evicts block 1
  EXPECT_EQ(table(bm, 4)[2], 1);
  EXPECT_EQ(bm.prefix_cache_stats().evicted_blocks, 1);
  bm.free(4);
  bm.check_invariants();
  run_prompt(bm, 5, ids({3, 4, 7}), 0);
  run_prompt(bm, 6, ids({1, 2, 7}), 2);
  EXPECT_EQ(table(bm, 6)[0], 0);
}

TEST(KvPrefixCache, OffByDefault) {
  BlockManager bm(8, 2);
  EXPECT_FALSE(bm.prefix_caching());
  run_prompt(bm, 1, ids({1, 2, 3}), 0);
  run_prompt(bm, 2, ids({1, 2, 3}), 0);
  bm.free(1);
  EXPECT_EQ(bm.num_cached_blocks(), 0);
  EXPECT_EQ(bm.prefix_cache_stats().queried_tokens, 0);
}
