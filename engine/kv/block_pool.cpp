#include "engine/kv/block_pool.h"

#include "engine/common/error.h"

#include <algorithm>
#include <unordered_set>

namespace qllm {
namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t default_content_hash(CacheId parent, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent + 0x9e3779b97f4a7c15ULL);
  for (int32_t t : tokens) h = mix64(h ^ uint64_t(uint32_t(t)));
  return mix64(h ^ uint64_t(tokens.size()));
}

BlockPool::BlockPool(int num_blocks, ContentHash hash) : hash_(hash) {
  QLLM_CHECK(hash_ != nullptr);
  QLLM_CHECK_MSG(num_blocks > 0, "num_blocks = {}", num_blocks);
  blocks_.resize(size_t(num_blocks));
  free_.reserve(size_t(num_blocks));
  for (BlockId b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

size_t BlockPool::index(BlockId b) const {
  QLLM_CHECK_MSG(b >= 0 && size_t(b) < blocks_.size(), "block {} of {}", b, blocks_.size());
  return size_t(b);
}

void BlockPool::lru_push_back(BlockId b) {
  Block& blk = blocks_[index(b)];
  blk.prev = lru_tail_;
  blk.next = kNoBlock;
  if (lru_tail_ != kNoBlock) blocks_[size_t(lru_tail_)].next = b;
  else lru_head_ = b;
  lru_tail_ = b;
  ++num_evictable_;
}

void BlockPool::lru_remove(BlockId b) {
  Block& blk = blocks_[index(b)];
  if (blk.prev != kNoBlock) blocks_[size_t(blk.prev)].next = blk.next;
  else lru_head_ = blk.next;
  if (blk.next != kNoBlock) blocks_[size_t(blk.next)].prev = blk.prev;
  else lru_tail_ = blk.prev;
  blk.prev = blk.next = kNoBlock;
  --num_evictable_;
}

void BlockPool::uncache(BlockId b) {
  Block& blk = blocks_[index(b)];
  QLLM_CHECK(blk.cid != kNoCacheId);
  auto [first, last] = cache_.equal_range(blk.hash);
  auto it = std::find_if(first, last, [b](const auto& kv) { return kv.second == b; });
  QLLM_CHECK_MSG(it != last, "cached block {} missing from the cache index", b);
  cache_.erase(it);
  blk.cid = kNoCacheId;
  blk.parent = kNoCacheId;
  blk.hash = 0;
  blk.tokens.clear();
}

BlockId BlockPool::take() {
  BlockId b = kNoBlock;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    QLLM_CHECK_MSG(lru_head_ != kNoBlock, "take() with no free or evictable block");
    b = lru_head_;
    lru_remove(b);
    uncache(b);
    ++evictions_;
  }
  Block& blk = blocks_[size_t(b)];
  QLLM_CHECK(blk.refs == 0 && blk.cid == kNoCacheId);
  blk.state = State::kUsed;
  blk.refs = 1;
  return b;
}

void BlockPool::ref(BlockId b) {
  Block& blk = blocks_[index(b)];
  QLLM_CHECK_MSG(blk.state != State::kFree, "ref() on free block {}", b);
  if (blk.state == State::kEvictable) {
    lru_remove(b);
    blk.state = State::kUsed;
  }
  ++blk.refs;
}

void BlockPool::unref(BlockId b) {
  Block& blk = blocks_[index(b)];
  QLLM_CHECK_MSG(blk.state == State::kUsed && blk.refs > 0, "unref() on unused block {}", b);
  if (--blk.refs > 0) return;
  if (blk.cid != kNoCacheId) {
    blk.state = State::kEvictable;
    lru_push_back(b);
  } else {
    blk.state = State::kFree;
    free_.push_back(b);
  }
}

BlockId BlockPool::lookup(CacheId parent, std::span<const int32_t> tokens) const {
  auto [first, last] = cache_.equal_range(hash_(parent, tokens));
  for (auto it = first; it != last; ++it) {
    const Block& blk = blocks_[size_t(it->second)];
    if (blk.parent == parent && std::ranges::equal(blk.tokens, tokens)) return it->second;
  }
  return kNoBlock;
}

CacheId BlockPool::publish(BlockId b, CacheId parent, std::span<const int32_t> tokens) {
  Block& blk = blocks_[index(b)];
  QLLM_CHECK_MSG(blk.state == State::kUsed && blk.cid == kNoCacheId,
                 "publish() on block {} that is unused or already cached", b);
  if (const BlockId held = lookup(parent, tokens); held != kNoBlock)
    return blocks_[size_t(held)].cid;
  blk.cid = next_cid_++;
  blk.parent = parent;
  blk.hash = hash_(parent, tokens);
  blk.tokens.assign(tokens.begin(), tokens.end());
  cache_.emplace(blk.hash, b);
  return blk.cid;
}

void BlockPool::check_invariants(std::span<const int> expected_refs) const {
  const size_t n = blocks_.size();
  QLLM_CHECK_MSG(expected_refs.size() == n, "{} expected refcounts for {} blocks",
                 expected_refs.size(), n);
  std::vector<int> seen(n, 0);  // how many lists each block is on
  for (BlockId b : free_) {
    QLLM_CHECK_MSG(b >= 0 && size_t(b) < n, "free list holds block {}", b);
    ++seen[size_t(b)];
    const Block& blk = blocks_[size_t(b)];
    QLLM_CHECK_MSG(blk.state == State::kFree, "block {} on the free list is not free", b);
  }
  int evictable = 0;
  BlockId prev = kNoBlock;
  for (BlockId b = lru_head_; b != kNoBlock; b = blocks_[size_t(b)].next) {
    QLLM_CHECK_MSG(b >= 0 && size_t(b) < n, "LRU list holds block {}", b);
    QLLM_CHECK_MSG(++evictable <= int(n), "LRU list has a cycle");
    ++seen[size_t(b)];
    const Block& blk = blocks_[size_t(b)];
    QLLM_CHECK_MSG(blk.state == State::kEvictable, "block {} on the LRU list is not evictable", b);
    QLLM_CHECK_MSG(blk.prev == prev, "LRU back link of block {} is {}, not {}", b, blk.prev, prev);
    prev = b;
  }
  QLLM_CHECK_MSG(prev == lru_tail_, "LRU tail is {}, the last block is {}", lru_tail_, prev);
  QLLM_CHECK_MSG(evictable == num_evictable_, "{} evictable blocks counted as {}", evictable,
                 num_evictable_);

  size_t cached = 0;
  std::unordered_set<CacheId> cids;
  for (size_t i = 0; i < n; ++i) {
    const Block& blk = blocks_[i];
    const int in_lists = blk.state == State::kUsed ? 0 : 1;
    QLLM_CHECK_MSG(seen[i] == in_lists, "block {} ({}) is on {} lists", i, int(blk.state),
                   seen[i]);
    QLLM_CHECK_MSG(blk.refs == expected_refs[i], "block {} has refcount {}, held by {} tables", i,
                   blk.refs, expected_refs[i]);
    QLLM_CHECK_MSG((blk.state == State::kUsed) == (blk.refs > 0), "block {} state {} refcount {}",
                   i, int(blk.state), blk.refs);
    QLLM_CHECK_MSG(blk.state != State::kFree || blk.cid == kNoCacheId, "free block {} is cached",
                   i);
    QLLM_CHECK_MSG(blk.state != State::kEvictable || blk.cid != kNoCacheId,
                   "evictable block {} is not cached", i);
    if (blk.cid == kNoCacheId) continue;
    ++cached;
    QLLM_CHECK_MSG(blk.cid < next_cid_ && blk.parent < blk.cid,
                   "block {} has cache id {} after parent {}", i, blk.cid, blk.parent);
    QLLM_CHECK_MSG(cids.insert(blk.cid).second, "cache id {} held twice", blk.cid);
    QLLM_CHECK_MSG(blk.hash == hash_(blk.parent, blk.tokens), "block {} hash is stale", i);
    QLLM_CHECK_MSG(lookup(blk.parent, blk.tokens) == BlockId(i),
                   "cached block {} is not what its content looks up", i);
  }
  QLLM_CHECK_MSG(cached == cache_.size(), "{} cached blocks, {} cache entries", cached,
                 cache_.size());
}

}  // namespace qllm
