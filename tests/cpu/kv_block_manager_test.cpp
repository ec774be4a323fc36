// KV block manager: accounting, boundaries, misuse errors, fork and
// copy-on-write, prefix caching and LRU eviction. The randomized stress test
// (kv_block_manager_stress_test.cpp) checks all of it against a model.
#include "engine/common/error.h"
#include "engine/kv/block_manager.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

using namespace qllm;

namespace {

// Runs f, which must throw qllm::Error with a message containing every part.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no qllm::Error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << p << "\"";
  }
}

std::vector<BlockId> table(const BlockManager& bm, SeqId seq) {
  const auto t = bm.block_table(seq);
  return {t.begin(), t.end()};
}

std::vector<int32_t> iota_ids(int n, int32_t first) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = first + i;
  return v;
}

}  // namespace

TEST(KvBlockManager, RejectsBadSizes) {
  expect_error([] { BlockManager(0, 16); }, {"num_blocks", "0"});
  expect_error([] { BlockManager(8, 0); }, {"block_size", "0"});
  expect_error([] { BlockManager(8, -4); }, {"block_size", "-4"});
}

TEST(KvBlockManager, AllocateAppendFreeAccounting) {
  BlockManager bm(10, 4);
  EXPECT_EQ(bm.capacity_tokens(), 40);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.0);

  ASSERT_TRUE(bm.can_allocate(5));
  bm.allocate(7, 5);
  bm.check_invariants();
  EXPECT_EQ(table(bm, 7), (std::vector<BlockId>{0, 1}));
  EXPECT_EQ(bm.num_tokens(7), 5);
  EXPECT_EQ(bm.num_computed(7), 0);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.2);

  // Filling the partial last block takes no block.
  EXPECT_TRUE(bm.append(7, 3).empty());
  EXPECT_EQ(bm.num_tokens(7), 8);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  // Crossing the boundary takes one.
  EXPECT_TRUE(bm.append(7, 1).empty());
  EXPECT_EQ(table(bm, 7), (std::vector<BlockId>{0, 1, 2}));
  EXPECT_EQ(bm.num_free_blocks(), 7);
  // Several blocks at once, and a no-op.
  EXPECT_TRUE(bm.append(7, 9).empty());
  EXPECT_EQ(bm.num_tokens(7), 18);
  EXPECT_EQ(bm.block_table(7).size(), 5u);
  EXPECT_TRUE(bm.append(7, 0).empty());
  EXPECT_EQ(bm.num_free_blocks(), 5);
  bm.check_invariants();

  bm.allocate(8, 0);  // an empty sequence holds no block
  EXPECT_TRUE(bm.block_table(8).empty());
  EXPECT_EQ(bm.num_seqs(), 2);

  bm.free(7);
  bm.free(8);
  bm.check_invariants();
  EXPECT_EQ(bm.num_free_blocks(), 10);
  EXPECT_EQ(bm.num_seqs(), 0);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.0);
}

TEST(KvBlockManager, SlotOf) {
  BlockManager bm(8, 4);
  bm.allocate(1, 3);  // block 0
  bm.allocate(2, 6);  // blocks 1, 2
  EXPECT_TRUE(bm.append(1, 2).empty());  // block 3 for position 4
  EXPECT_EQ(table(bm, 1), (std::vector<BlockId>{0, 3}));
  EXPECT_EQ(bm.slot_of(1, 0), 0);
  EXPECT_EQ(bm.slot_of(1, 3), 3);
  EXPECT_EQ(bm.slot_of(1, 4), 12);
  EXPECT_EQ(bm.slot_of(2, 0), 4);
  EXPECT_EQ(bm.slot_of(2, 5), 9);
  expect_error([&] { (void)bm.slot_of(1, 5); }, {"sequence 1", "position 5", "5 reserved"});
  expect_error([&] { (void)bm.slot_of(1, -1); }, {"position -1"});
}

TEST(KvBlockManager, ExactlyFullBlocks) {
  BlockManager bm(4, 4);
  ASSERT_TRUE(bm.can_allocate(16));
  EXPECT_FALSE(bm.can_allocate(17));
  bm.allocate(1, 8);
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  EXPECT_TRUE(bm.can_append(1, 8));
  EXPECT_FALSE(bm.can_append(1, 9));
  EXPECT_TRUE(bm.append(1, 1).empty());  // 9 tokens: a third block
  EXPECT_EQ(bm.block_table(1).size(), 3u);
  EXPECT_EQ(bm.slot_of(1, 8), int64_t(bm.block_table(1)[2]) * 4);
  bm.check_invariants();
}

TEST(KvBlockManager, BlockSizeOne) {
  BlockManager bm(5, 1);
  bm.allocate(1, 3);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  for (int p = 0; p < 3; ++p) EXPECT_EQ(bm.slot_of(1, p), bm.block_table(1)[size_t(p)]);
  EXPECT_TRUE(bm.append(1, 2).empty());
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_FALSE(bm.can_append(1, 1));
  EXPECT_TRUE(bm.can_append(1, 0));
  bm.check_invariants();
  bm.free(1);
  EXPECT_EQ(bm.num_free_blocks(), 5);
}

TEST(KvBlockManager, ZeroFreeBlocks) {
  BlockManager bm(4, 4);
  bm.allocate(1, 15);  // all four blocks, one slot left in the last
  EXPECT_EQ(bm.num_free_blocks(), 0);
  EXPECT_DOUBLE_EQ(bm.usage(), 1.0);
  EXPECT_FALSE(bm.can_allocate(1));
  EXPECT_TRUE(bm.can_allocate(0));
  expect_error([&] { bm.allocate(2, 1); },
               {"sequence 2", "1 tokens need 1 new blocks of 4 tokens", "only 0 of 4 are free"});
  EXPECT_FALSE(bm.contains(2));
  // The last slot of the last block needs no new block.
  EXPECT_TRUE(bm.can_append(1, 1));
  EXPECT_FALSE(bm.can_append(1, 2));
  expect_error([&] { (void)bm.append(1, 2); },
               {"sequence 1", "17 tokens", "more than the whole cache"});
  EXPECT_EQ(bm.num_tokens(1), 15);  // unchanged by the refused append
  EXPECT_TRUE(bm.append(1, 1).empty());
  bm.check_invariants();
}

TEST(KvBlockManager, RequestLargerThanTheCacheNamesTheSizes) {
  BlockManager bm(4, 16);
  EXPECT_FALSE(bm.can_allocate(65));
  expect_error([&] { bm.allocate(3, 65); },
               {"sequence 3", "65 tokens need 5 blocks of 16 tokens",
                "more than the whole cache (4 blocks, 64 tokens)"});
  const std::vector<int32_t> prompt(65, 1);
  EXPECT_FALSE(bm.can_allocate_prompt(prompt));
  expect_error([&] { (void)bm.allocate_prompt(3, prompt); }, {"65 tokens", "4 blocks, 64 tokens"});
  bm.allocate(3, 64);
  expect_error([&] { (void)bm.append(3, 1); }, {"65 tokens", "more than the whole cache"});
  bm.check_invariants();
}

TEST(KvBlockManager, MisuseThrows) {
  BlockManager bm(8, 4);
  expect_error([&] { bm.free(5); }, {"unknown sequence 5"});
  expect_error([&] { (void)bm.append(5, 1); }, {"append", "unknown sequence 5"});
  expect_error([&] { (void)bm.can_append(5, 1); }, {"unknown sequence 5"});
  expect_error([&] { (void)bm.block_table(5); }, {"unknown sequence 5"});
  expect_error([&] { (void)bm.slot_of(5, 0); }, {"unknown sequence 5"});
  expect_error([&] { bm.fork(5, 6); }, {"fork", "unknown sequence 5"});
  expect_error([&] { bm.allocate(1, -1); }, {"num_tokens must be >= 0, got -1"});
  expect_error([&] { (void)bm.refcount(8); }, {"block 8"});

  bm.allocate(1, 4);
  expect_error([&] { bm.allocate(1, 4); }, {"sequence 1 already exists"});
  expect_error([&] { (void)bm.allocate_prompt(1, iota_ids(3, 0)); }, {"already exists"});
  expect_error([&] { (void)bm.append(1, -2); }, {"n must be >= 0, got -2"});
  EXPECT_FALSE(bm.can_append(1, -2));
  const auto ids = iota_ids(5, 0);
  expect_error([&] { bm.mark_computed(1, ids); }, {"5 tokens computed", "only 4 of its 4"});
  expect_error([&] { bm.fork(1, 2); }, {"4 reserved positions", "not computed"});
  bm.mark_computed(1, std::span(ids).first(4));
  expect_error([&] { bm.fork(1, 1); }, {"sequence 1 already exists"});
  bm.free(1);
  expect_error([&] { bm.free(1); }, {"unknown sequence 1", "freed twice"});
  bm.check_invariants();
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

TEST(KvBlockManager, ForkSharesAndCopiesOnWrite) {
  BlockManager bm(8, 4);
  bm.allocate(1, 6);
  bm.mark_computed(1, iota_ids(6, 100));
  bm.fork(1, 2);
  bm.check_invariants();
  const auto parent = table(bm, 1);
  EXPECT_EQ(table(bm, 2), parent);
  EXPECT_EQ(bm.num_tokens(2), 6);
  EXPECT_EQ(bm.num_computed(2), 6);
  EXPECT_EQ(bm.refcount(parent[0]), 2);
  EXPECT_EQ(bm.refcount(parent[1]), 2);
  EXPECT_EQ(bm.num_free_blocks(), 6);  // forking takes nothing

  // The child writes into the shared partial block: it gets its own copy.
  const auto copies = bm.append(2, 1);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, parent[1]);
  const auto child = table(bm, 2);
  EXPECT_EQ(copies[0].dst, child[1]);
  EXPECT_NE(child[1], parent[1]);
  EXPECT_EQ(child[0], parent[0]);
  EXPECT_EQ(bm.refcount(parent[1]), 1);
  EXPECT_EQ(bm.refcount(child[1]), 1);
  EXPECT_EQ(bm.refcount(parent[0]), 2);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  bm.check_invariants();

  // The parent is now the only holder of its partial block: no copy.
  EXPECT_TRUE(bm.append(1, 2).empty());
  EXPECT_EQ(table(bm, 1)[1], parent[1]);
  bm.check_invariants();

  // Freeing the parent leaves the child intact.
  bm.free(1);
  EXPECT_EQ(bm.refcount(parent[0]), 1);
  EXPECT_EQ(table(bm, 2), child);
  bm.free(2);
  bm.check_invariants();
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

TEST(KvBlockManager, ForkAtABlockBoundaryCopiesNothing) {
  BlockManager bm(8, 4);
  bm.allocate(1, 8);
  bm.mark_computed(1, iota_ids(8, 0));
  bm.fork(1, 2);
  bm.fork(2, 3);
  EXPECT_EQ(bm.refcount(bm.block_table(1)[1]), 3);
  EXPECT_TRUE(bm.append(3, 1).empty());  // a fresh third block, full blocks stay shared
  EXPECT_EQ(bm.block_table(3).size(), 3u);
  EXPECT_EQ(bm.refcount(bm.block_table(1)[0]), 3);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  bm.check_invariants();
}

TEST(KvBlockManager, CopyOnWriteNeedsAFreeBlock) {
  BlockManager bm(2, 4);
  bm.allocate(1, 5);
  bm.mark_computed(1, iota_ids(5, 0));
  bm.fork(1, 2);
  EXPECT_EQ(bm.num_free_blocks(), 0);
  // Room is left in the last block, but it is shared.
  EXPECT_FALSE(bm.can_append(2, 1));
  expect_error([&] { (void)bm.append(2, 1); }, {"1 new blocks", "only 0 of 2"});
  bm.free(1);
  EXPECT_TRUE(bm.can_append(2, 1));
  EXPECT_TRUE(bm.append(2, 1).empty());  // sole holder now
  bm.check_invariants();
}
