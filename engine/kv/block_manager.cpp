#include "engine/kv/block_manager.h"

#include "engine/common/error.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace qllm {
namespace {

int checked_num_blocks(int num_blocks, int block_size) {
  if (num_blocks <= 0) fail("KV cache: num_blocks must be positive, got {}", num_blocks);
  if (block_size <= 0) fail("KV cache: block_size must be positive, got {}", block_size);
  return num_blocks;
}

}  // namespace

BlockManager::BlockManager(int num_blocks, int block_size, bool prefix_caching,
                           ContentHash hash)
    : pool_(checked_num_blocks(num_blocks, block_size), hash),
      block_size_(block_size),
      prefix_caching_(prefix_caching) {}

// --- helpers -----------------------------------------------------------------

const BlockManager::Seq& BlockManager::get(SeqId seq, const char* op) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end())
    fail("KV cache {}: unknown sequence {} (never allocated, or already freed)", op, seq);
  return it->second;
}

BlockManager::Seq& BlockManager::get(SeqId seq, const char* op) {
  return const_cast<Seq&>(std::as_const(*this).get(seq, op));
}

void BlockManager::check_new(SeqId seq, const char* op) const {
  if (seqs_.count(seq) != 0) fail("KV cache {}: sequence {} already exists", op, seq);
}

void BlockManager::check_count(SeqId seq, const char* op, const char* what, int64_t n) const {
  if (n < 0) fail("KV cache {}: sequence {}: {} must be >= 0, got {}", op, seq, what, n);
}

void BlockManager::fail_no_room(SeqId seq, const char* op, int64_t tokens, int64_t need,
                                int64_t available) const {
  const int64_t total = blocks_for(tokens);
  if (total > num_blocks())
    fail("KV cache {}: sequence {}: {} tokens need {} blocks of {} tokens, more than the whole "
         "cache ({} blocks, {} tokens)",
         op, seq, tokens, total, block_size_, num_blocks(), capacity_tokens());
  fail("KV cache {}: sequence {}: {} tokens need {} new blocks of {} tokens, only {} of {} are "
       "free",
       op, seq, tokens, need, block_size_, available, num_blocks());
}

std::vector<BlockId> BlockManager::prefix_hits(std::span<const int32_t> prompt) const {
  std::vector<BlockId> hits;
  if (!prefix_caching_ || prompt.empty()) return hits;
  // Leave at least the last prompt position to compute.
  const size_t max_hits = (prompt.size() - 1) / size_t(block_size_);
  const size_t bs = size_t(block_size_);
  CacheId parent = kNoCacheId;
  for (size_t i = 0; i < max_hits; ++i) {
    const BlockId b = pool_.lookup(parent, prompt.subspan(i * bs, bs));
    if (b == kNoBlock) break;
    hits.push_back(b);
    parent = pool_.cache_id(b);
  }
  return hits;
}

int BlockManager::evictable_among(std::span<const BlockId> hits) const {
  return int(std::ranges::count_if(hits, [&](BlockId b) { return pool_.is_evictable(b); }));
}

int64_t BlockManager::append_cost(const Seq& s, int n) const {
  if (n == 0) return 0;
  const int64_t grow = blocks_for(int64_t(s.num_tokens) + n) - int64_t(s.table.size());
  const bool cow = s.num_tokens % block_size_ != 0 && pool_.refs(s.table.back()) > 1;
  return grow + (cow ? 1 : 0);
}

// --- new sequences ---------------------------------------------------------------

bool BlockManager::can_allocate(int num_tokens) const {
  return num_tokens >= 0 && blocks_for(num_tokens) <= num_free_blocks();
}

void BlockManager::allocate(SeqId seq, int num_tokens) {
  check_new(seq, "allocate");
  check_count(seq, "allocate", "num_tokens", num_tokens);
  const int64_t need = blocks_for(num_tokens);
  if (need > num_free_blocks()) fail_no_room(seq, "allocate", num_tokens, need, num_free_blocks());
  Seq s;
  s.num_tokens = num_tokens;
  s.table.reserve(size_t(need));
  for (int64_t i = 0; i < need; ++i) s.table.push_back(pool_.take());
  seqs_.emplace(seq, std::move(s));
}

bool BlockManager::can_allocate_prompt(std::span<const int32_t> prompt) const {
  if (prompt.size() > size_t(std::numeric_limits<int>::max())) return false;
  const std::vector<BlockId> hits = prefix_hits(prompt);
  const int64_t need = blocks_for(int64_t(prompt.size())) - int64_t(hits.size());
  return need <= num_free_blocks() - evictable_among(hits);
}

int BlockManager::allocate_prompt(SeqId seq, std::span<const int32_t> prompt) {
  check_new(seq, "allocate");
  if (prompt.size() > size_t(std::numeric_limits<int>::max()))
    fail("KV cache allocate: sequence {}: prompt of {} tokens is too long", seq, prompt.size());
  const int tokens = int(prompt.size());
  const std::vector<BlockId> hits = prefix_hits(prompt);
  const int64_t total = blocks_for(tokens);
  const int64_t need = total - int64_t(hits.size());
  const int64_t available = num_free_blocks() - evictable_among(hits);
  if (total > num_blocks() || need > available)
    fail_no_room(seq, "allocate", tokens, need, available);

  Seq s;
  s.num_tokens = tokens;
  s.table.reserve(size_t(total));
  for (BlockId b : hits) {  // first, so that taking new blocks cannot evict them
    pool_.ref(b);
    s.table.push_back(b);
  }
  for (int64_t i = 0; i < need; ++i) s.table.push_back(pool_.take());
  const int cached = int(hits.size()) * block_size_;
  s.num_computed = cached;
  if (!hits.empty()) s.chain = pool_.cache_id(hits.back());
  seqs_.emplace(seq, std::move(s));
  if (prefix_caching_) {
    queried_tokens_ += tokens;
    hit_tokens_ += cached;
  }
  return cached;
}

// --- growing, computing, sharing, freeing -------------------------------------------

bool BlockManager::can_append(SeqId seq, int n) const {
  const Seq& s = get(seq, "can_append");
  if (n < 0 || n > std::numeric_limits<int>::max() - s.num_tokens) return false;
  return append_cost(s, n) <= num_free_blocks();
}

std::vector<BlockCopy> BlockManager::append(SeqId seq, int n) {
  Seq& s = get(seq, "append");
  check_count(seq, "append", "n", n);
  if (n > std::numeric_limits<int>::max() - s.num_tokens)
    fail("KV cache append: sequence {}: {} + {} tokens overflow", seq, s.num_tokens, n);
  const int64_t need = append_cost(s, n);
  if (need > num_free_blocks())
    fail_no_room(seq, "append", int64_t(s.num_tokens) + n, need, num_free_blocks());

  std::vector<BlockCopy> copies;
  if (n == 0) return copies;
  if (s.num_tokens % block_size_ != 0 && pool_.refs(s.table.back()) > 1) {
    const BlockId src = s.table.back();
    const BlockId dst = pool_.take();
    pool_.unref(src);  // still held by the other sequences
    s.table.back() = dst;
    copies.push_back({src, dst});
  }
  s.num_tokens += n;
  while (int64_t(s.table.size()) < blocks_for(s.num_tokens)) s.table.push_back(pool_.take());
  return copies;
}

void BlockManager::mark_computed(SeqId seq, std::span<const int32_t> token_ids) {
  Seq& s = get(seq, "mark_computed");
  const size_t pending = size_t(s.num_tokens - s.num_computed);
  if (token_ids.size() > pending)
    fail("KV cache mark_computed: sequence {}: {} tokens computed, but only {} of its {} "
         "positions are reserved and not yet computed",
         seq, token_ids.size(), pending, s.num_tokens);
  if (!prefix_caching_) {
    s.num_computed += int(token_ids.size());
    return;
  }
  const size_t bs = size_t(block_size_);
  for (int32_t id : token_ids) {
    s.partial.push_back(id);
    ++s.num_computed;
    if (s.partial.size() < bs) continue;
    const BlockId b = s.table[size_t(s.num_computed / block_size_ - 1)];
    s.chain = pool_.publish(b, s.chain, s.partial);
    s.partial.clear();
  }
}

void BlockManager::fork(SeqId parent, SeqId child) {
  const Seq& p = get(parent, "fork");
  check_new(child, "fork");
  if (p.num_computed != p.num_tokens)
    fail("KV cache fork: sequence {} has {} reserved positions whose KV is not computed yet "
         "(mark_computed them before forking)",
         parent, p.num_tokens - p.num_computed);
  Seq c = p;
  for (BlockId b : c.table) pool_.ref(b);
  seqs_.emplace(child, std::move(c));
}

void BlockManager::free(SeqId seq) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end())
    fail("KV cache free: unknown sequence {} (never allocated, or freed twice)", seq);
  // Last block first: with an LRU of evictable blocks, a sequence's tail is
  // reclaimed before the prefix that other prompts are likelier to share.
  const std::vector<BlockId>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) pool_.unref(*b);
  seqs_.erase(it);
}

// --- queries -----------------------------------------------------------------

std::span<const BlockId> BlockManager::block_table(SeqId seq) const {
  return get(seq, "block_table").table;
}

int BlockManager::num_tokens(SeqId seq) const { return get(seq, "num_tokens").num_tokens; }

int BlockManager::num_computed(SeqId seq) const { return get(seq, "num_computed").num_computed; }

int64_t BlockManager::slot_of(SeqId seq, int position) const {
  const Seq& s = get(seq, "slot_of");
  if (position < 0 || position >= s.num_tokens)
    fail("KV cache slot_of: sequence {}: position {} is outside its {} reserved positions", seq,
         position, s.num_tokens);
  const BlockId b = s.table[size_t(position / block_size_)];
  return int64_t(b) * block_size_ + position % block_size_;
}

int BlockManager::refcount(BlockId block) const {
  if (block < 0 || block >= num_blocks())
    fail("KV cache refcount: block {} out of range [0, {})", block, num_blocks());
  return pool_.refs(block);
}

PrefixCacheStats BlockManager::prefix_cache_stats() const {
  return {queried_tokens_, hit_tokens_, pool_.num_evictions()};
}

void BlockManager::check_invariants() const {
  std::vector<int> refs(static_cast<size_t>(num_blocks()), 0);
  std::vector<SeqId> last_holder(static_cast<size_t>(num_blocks()));
  for (const auto& [id, s] : seqs_) {
    QLLM_CHECK_MSG(s.num_tokens >= 0 && s.num_computed >= 0 && s.num_computed <= s.num_tokens,
                   "sequence {}: {} computed of {} tokens", id, s.num_computed, s.num_tokens);
    QLLM_CHECK_MSG(int64_t(s.table.size()) == blocks_for(s.num_tokens),
                   "sequence {}: {} blocks for {} tokens", id, s.table.size(), s.num_tokens);
    const size_t partial = prefix_caching_ ? size_t(s.num_computed % block_size_) : 0;
    QLLM_CHECK_MSG(s.partial.size() == partial, "sequence {}: {} partial ids, expected {}", id,
                   s.partial.size(), partial);
    // Blocks from this index on hold reserved, uncomputed positions.
    const size_t first_pending = s.num_computed < s.num_tokens
                                     ? size_t(s.num_computed / block_size_)
                                     : s.table.size();
    for (size_t i = 0; i < s.table.size(); ++i) {
      const BlockId b = s.table[i];
      QLLM_CHECK_MSG(b >= 0 && b < num_blocks(), "sequence {} holds block {}", id, b);
      QLLM_CHECK_MSG(refs[size_t(b)] == 0 || last_holder[size_t(b)] != id,
                     "sequence {} holds block {} twice", id, b);
      ++refs[size_t(b)];
      last_holder[size_t(b)] = id;
      QLLM_CHECK_MSG(i < first_pending || pool_.refs(b) == 1,
                     "sequence {}: block {} holds uncomputed positions but has refcount {}", id,
                     b, pool_.refs(b));
      QLLM_CHECK_MSG(pool_.cache_id(b) == kNoCacheId ||
                         int64_t(i + 1) * block_size_ <= s.num_computed,
                     "sequence {}: cached block {} at index {} is not computed ({} of {})", id,
                     b, i, s.num_computed, s.num_tokens);
    }
  }
  pool_.check_invariants(refs);
}

}  // namespace qllm
