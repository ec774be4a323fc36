// BlockPool: block states, the free list, the LRU list of evictable cached
// blocks, and exact prefix-cache keys even when every hash collides.
#include "engine/kv/block_pool.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

using namespace qllm;

namespace {

uint64_t constant_hash(CacheId, std::span<const int32_t>) { return 42; }

std::vector<int32_t> ids(std::initializer_list<int32_t> v) { return v; }

// Checks the pool with refs[b] expected for each block.
void check(const BlockPool& pool, std::vector<int> refs) {
  refs.resize(size_t(pool.num_blocks()), 0);
  pool.check_invariants(refs);
}

}  // namespace

TEST(KvBlockPool, TakeAndReturnBlocks) {
  BlockPool pool(3);
  EXPECT_EQ(pool.num_available(), 3);
  EXPECT_EQ(pool.take(), 0);
  EXPECT_EQ(pool.take(), 1);
  pool.ref(1);
  EXPECT_EQ(pool.refs(1), 2);
  check(pool, {1, 2});
  pool.unref(0);  // uncached: back to the free list, handed out next
  pool.unref(1);
  EXPECT_EQ(pool.num_available(), 2);
  EXPECT_EQ(pool.num_evictable(), 0);
  check(pool, {0, 1});
  EXPECT_EQ(pool.take(), 0);
  EXPECT_EQ(pool.take(), 2);
  EXPECT_EQ(pool.num_available(), 0);
  check(pool, {1, 1, 1});
}

TEST(KvBlockPool, PublishedBlocksBecomeEvictableThenReused) {
  BlockPool pool(3);
  const BlockId a = pool.take(), b = pool.take();
  const CacheId ca = pool.publish(a, kNoCacheId, ids({1, 2}));
  const CacheId cb = pool.publish(b, ca, ids({3, 4}));
  EXPECT_NE(ca, kNoCacheId);
  EXPECT_GT(cb, ca);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({1, 2})), a);
  EXPECT_EQ(pool.lookup(ca, ids({3, 4})), b);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({3, 4})), kNoBlock);

  pool.unref(b);  // b is older on the LRU list than a
  pool.unref(a);
  EXPECT_EQ(pool.num_evictable(), 2);
  EXPECT_EQ(pool.num_available(), 3);
  check(pool, {});
  pool.ref(a);  // revived: leaves the LRU list
  EXPECT_EQ(pool.num_evictable(), 1);
  EXPECT_FALSE(pool.is_evictable(a));
  check(pool, {1});

  EXPECT_EQ(pool.take(), 2);  // the free block first
  EXPECT_EQ(pool.num_evictions(), 0);
  EXPECT_EQ(pool.take(), b);  // then the evictable one, dropping its entry
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_EQ(pool.cache_id(b), kNoCacheId);
  EXPECT_EQ(pool.lookup(ca, ids({3, 4})), kNoBlock);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({1, 2})), a);
  check(pool, {1, 1, 1});
}

TEST(KvBlockPool, DuplicateContentKeepsTheFirstBlock) {
  BlockPool pool(2);
  const BlockId a = pool.take(), b = pool.take();
  const CacheId ca = pool.publish(a, kNoCacheId, ids({5, 6}));
  EXPECT_EQ(pool.publish(b, kNoCacheId, ids({5, 6})), ca);
  EXPECT_EQ(pool.cache_id(b), kNoCacheId);
  pool.unref(b);  // uncached: free, not evictable
  EXPECT_EQ(pool.num_evictable(), 0);
  check(pool, {1});
}

TEST(KvBlockPool, CollidingHashesStillMatchExactly) {
  BlockPool pool(6, constant_hash);
  std::vector<BlockId> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(pool.take());
  const CacheId c0 = pool.publish(blocks[0], kNoCacheId, ids({1, 2}));
  const CacheId c1 = pool.publish(blocks[1], c0, ids({3, 4}));
  const CacheId c2 = pool.publish(blocks[2], kNoCacheId, ids({3, 4}));
  const CacheId c3 = pool.publish(blocks[3], c2, ids({1, 2}));
  const CacheId c4 = pool.publish(blocks[4], c0, ids({1, 2}));
  EXPECT_EQ(std::set<CacheId>({c0, c1, c2, c3, c4}).size(), 5u);
  check(pool, {1, 1, 1, 1, 1});
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({1, 2})), blocks[0]);
  EXPECT_EQ(pool.lookup(c0, ids({3, 4})), blocks[1]);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({3, 4})), blocks[2]);
  EXPECT_EQ(pool.lookup(c2, ids({1, 2})), blocks[3]);
  EXPECT_EQ(pool.lookup(c0, ids({1, 2})), blocks[4]);
  EXPECT_EQ(pool.lookup(c1, ids({1, 2})), kNoBlock);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({1})), kNoBlock);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({1, 2, 3})), kNoBlock);

  // Evicting from the shared bucket removes exactly the evicted block's entry.
  for (int i : {2, 0, 4, 1, 3}) pool.unref(blocks[size_t(i)]);
  EXPECT_EQ(pool.take(), 5);
  EXPECT_EQ(pool.take(), blocks[2]);
  EXPECT_EQ(pool.take(), blocks[0]);
  check(pool, {1, 0, 1, 0, 0, 1});
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({3, 4})), kNoBlock);
  EXPECT_EQ(pool.lookup(kNoCacheId, ids({1, 2})), kNoBlock);
  EXPECT_EQ(pool.lookup(c0, ids({1, 2})), blocks[4]);  // still cached (not reachable
  EXPECT_EQ(pool.lookup(c2, ids({1, 2})), blocks[3]);  // from a prompt any more)
}
