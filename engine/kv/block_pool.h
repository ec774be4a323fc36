// The physical blocks of one paged KV cache: reference counts, the free list,
// the prefix cache of full blocks and the LRU list of evictable cached blocks.
//
// A block is in exactly one of three states:
//   free       refcount 0, not cached, on the free list;
//   evictable  refcount 0, cached (its content can still be reused), on the
//              LRU list; reclaimed only when the free list is empty;
//   used       refcount > 0 (held by that many block tables), cached or not.
//
// The prefix cache maps the content of a full block to the block holding it.
// Content is chained: a cached block is identified by (parent, token ids),
// where parent is the CacheId of the cached block before it in its sequence
// (kNoCacheId for a sequence's first block). CacheIds are handed out once and
// never reused, so equal keys mean equal whole prefixes: a lookup compares the
// parent id and every token id, and a hash collision can never return a block
// with other content. The 64-bit hash only picks the bucket.
//
// Plain host-side bookkeeping: it knows nothing about sequences (BlockManager
// builds block tables on top of it) nor about where the KV memory lives.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace qllm {

using BlockId = int32_t;
inline constexpr BlockId kNoBlock = -1;

using CacheId = uint64_t;
inline constexpr CacheId kNoCacheId = 0;

// Bucket hash of a cached block's key (parent, token ids). Only its spread
// matters: lookups compare keys in full.
using ContentHash = uint64_t (*)(CacheId parent, std::span<const int32_t> tokens);
uint64_t default_content_hash(CacheId parent, std::span<const int32_t> tokens);

class BlockPool {
 public:
  // All blocks start free; take() hands them out in increasing id order.
  // `hash` is replaceable so that tests can force collisions.
  explicit BlockPool(int num_blocks, ContentHash hash = default_content_hash);

  int num_blocks() const { return int(blocks_.size()); }
  // Blocks take() can hand out: free plus evictable.
  int num_available() const { return int(free_.size()) + num_evictable_; }
  int num_evictable() const { return num_evictable_; }
  // Cached blocks dropped from the prefix cache to be reused since creation.
  int64_t num_evictions() const { return evictions_; }

  int refs(BlockId b) const { return blocks_[index(b)].refs; }
  bool is_evictable(BlockId b) const { return blocks_[index(b)].state == State::kEvictable; }
  CacheId cache_id(BlockId b) const { return blocks_[index(b)].cid; }

  // A block with refcount 1 and no cache entry: the most recently freed free
  // block, or if none, the least recently used evictable block (its cache
  // entry is dropped). Requires num_available() > 0.
  BlockId take();
  // refcount + 1. An evictable block leaves the LRU list and becomes used.
  void ref(BlockId b);
  // refcount - 1. At zero a cached block becomes evictable (most recently used
  // end of the LRU list); any other block goes back to the free list.
  void unref(BlockId b);

  // The cached block (used or evictable) holding `tokens` after `parent`, or
  // kNoBlock.
  BlockId lookup(CacheId parent, std::span<const int32_t> tokens) const;
  // Publishes used, uncached block b as holding `tokens` after `parent`, the
  // caller having written its KV in full. When that content is already cached
  // in another block, b stays uncached. Returns the CacheId of the entry that
  // now holds the content (the parent of the next block of the sequence).
  CacheId publish(BlockId b, CacheId parent, std::span<const int32_t> tokens);

  // Aborts with a description unless every block is in exactly one state and
  // list, the lists and the cache index agree, and refs(b) == expected_refs[b].
  void check_invariants(std::span<const int> expected_refs) const;

 private:
  enum class State : uint8_t { kFree, kEvictable, kUsed };
  struct Block {
    State state = State::kFree;
    int32_t refs = 0;
    CacheId cid = kNoCacheId;     // kNoCacheId: not in the prefix cache
    CacheId parent = kNoCacheId;  // while cached: the key of this block's content
    uint64_t hash = 0;
    std::vector<int32_t> tokens;
    BlockId prev = kNoBlock;  // LRU links while evictable
    BlockId next = kNoBlock;
  };

  size_t index(BlockId b) const;
  void lru_push_back(BlockId b);
  void lru_remove(BlockId b);
  void uncache(BlockId b);

  ContentHash hash_;
  std::vector<Block> blocks_;
  std::vector<BlockId> free_;  // a stack: back() is handed out first
  BlockId lru_head_ = kNoBlock;  // least recently used evictable block
  BlockId lru_tail_ = kNoBlock;  // most recently used
  int num_evictable_ = 0;
  std::unordered_multimap<uint64_t, BlockId> cache_;  // content hash -> cached block
  CacheId next_cid_ = 1;
  int64_t evictions_ = 0;
};

}  // namespace qllm
