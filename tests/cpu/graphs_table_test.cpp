// The graph table's index arithmetic (shared by the host dispatcher and the
// device loop): every (slot, kind, layer, expert, bucket) has its own entry,
// the entries fill the array exactly, and out-of-range keys have none.
#include "graphs/graph_table.h"

#include <gtest/gtest.h>

#include <set>

using namespace qllm::graphs;

TEST(GraphTable, IndexIsABijectionOntoTheArray) {
  const TableShape s{2, 3, 4, 5};
  EXPECT_EQ(s.per_slot(), 3 * 5 + 3 * 4 * 5 + 5);
  std::set<int64_t> seen;
  for (int slot = 0; slot < s.slots; ++slot)
    for (int b = 0; b < s.buckets; ++b) {
      for (int l = 0; l < s.layers; ++l) {
        EXPECT_TRUE(seen.insert(s.index(slot, UnitKind::Attn, l, 0, b)).second);
        for (int e = 0; e < s.experts; ++e)
          EXPECT_TRUE(seen.insert(s.index(slot, UnitKind::Expert, l, e, b)).second);
      }
      EXPECT_TRUE(seen.insert(s.index(slot, UnitKind::Head, 0, 0, b)).second);
    }
  ASSERT_EQ(int64_t(seen.size()), s.size());
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), s.size() - 1);
}

TEST(GraphTable, OutOfRangeKeysHaveNoEntry) {
  const TableShape s{1, 2, 8, 4};
  EXPECT_EQ(s.index(1, UnitKind::Attn, 0, 0, 0), -1);
  EXPECT_EQ(s.index(-1, UnitKind::Attn, 0, 0, 0), -1);
  EXPECT_EQ(s.index(0, UnitKind::Attn, 2, 0, 0), -1);
  EXPECT_EQ(s.index(0, UnitKind::Expert, 0, 8, 0), -1);
  EXPECT_EQ(s.index(0, UnitKind::Expert, 0, -1, 0), -1);
  EXPECT_EQ(s.index(0, UnitKind::Head, 0, 0, 4), -1);
  EXPECT_EQ(s.index(0, UnitKind::Head, 0, 0, -1), -1);
  DeviceGraphTable t{s, nullptr};
  EXPECT_EQ(t.at(0, UnitKind::Head, 0, 0, 9), nullptr);
}

TEST(GraphTable, BucketOfPicksTheSmallestPowerOfTwoThatHolds) {
  EXPECT_EQ(bucket_of(1, 9), 0);
  EXPECT_EQ(bucket_of(2, 9), 1);
  EXPECT_EQ(bucket_of(3, 9), 2);
  EXPECT_EQ(bucket_of(4, 9), 2);
  EXPECT_EQ(bucket_of(5, 9), 3);
  EXPECT_EQ(bucket_of(256, 9), 8);
  EXPECT_EQ(bucket_of(257, 9), -1);
  EXPECT_EQ(bucket_of(0, 9), 0);
}
