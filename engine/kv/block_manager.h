// Paged KV-cache block manager: block tables of sequences over a fixed pool
// of KV blocks, with copy-on-write sharing (fork) and optional prefix caching.
//
// The KV cache is `num_blocks` blocks of `block_size` token positions each.
// Position p of a sequence lives in block block_table(seq)[p / block_size] at
// offset p % block_size, i.e. in KV slot slot_of(seq, p) =
// block_table(seq)[p / block_size] * block_size + p % block_size (the index the
// KV-write kernel uses, per layer, for K and V alike). A block table always
// has exactly ceil(num_tokens / block_size) entries.
//
// This is plain host-side bookkeeping: it never touches KV memory and does not
// know where it lives. The caller (the engine) copies block tables and slot
// indices into the buffers its kernels read, and performs the block copies
// that append() returns. Not thread-safe: one owner, the host scheduler.
//
// Lifetime of a sequence, whose positions fall in two ranges:
//
//   [0, num_computed)          KV written and reported by mark_computed()
//   [num_computed, num_tokens) reserved: slots allocated, KV not written yet
//
//   allocate() / allocate_prompt()  reserve the prompt (a prefix-cache hit
//                                   counts as already computed)
//   append(seq, n)                  reserve n more positions (decode steps)
//   mark_computed(seq, ids)         after a forward pass wrote the KV of the
//                                   next ids.size() reserved positions
//   fork(parent, child)             child shares every block of parent
//   free(seq)                       drop the sequence and its references
//
// Reserving and computing are separate so that the host can reserve slots for
// work it queues ahead of time (before the token ids are sampled), and so that
// a block enters the prefix cache only when its KV is completely written: a
// pass still writing it (or preempted half-way) is never read by another
// sequence through a cache hit.
//
// Sharing. Blocks carry reference counts (how many block tables hold them).
// Shared blocks are never written: full shared blocks are immutable, and
// append() gives a sequence its own copy of a shared partial last block before
// reserving positions in it (copy-on-write), returning the copy to perform.
// Invariant: a block holding reserved (not yet computed) positions of a
// sequence is held by that sequence alone.
//
// Prefix caching (optional). A full block whose KV is computed is published
// under (content of the previous block, its token ids). allocate_prompt()
// reuses the longest run of cached blocks matching the prompt's leading full
// blocks (at most prompt_len - 1 tokens, so at least one position is left to
// compute and produce logits). Blocks whose refcount drops to zero stay cached
// on an LRU list and are reclaimed, least recently freed first, only when no
// free block remains. The match is exact (token ids are compared), never a bare
// hash comparison.
//
// Errors. Misuse from outside (unknown or duplicate sequence id, double free,
// reserving more than is free, positions out of range, negative counts) throws
// qllm::Error naming the sequence and the sizes, and leaves the manager
// unchanged. Broken internal invariants abort (QLLM_CHECK).
#pragma once

#include "engine/kv/block_pool.h"

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace qllm {

// Caller-chosen sequence id (e.g. the request id; a forked child gets its own).
using SeqId = int64_t;

// A block copy the caller must perform for copy-on-write: copy the whole block
// `src` to block `dst` (all block_size slots, K and V, every layer) before the
// next forward pass writes KV (in stream order on the GPU). From then on `dst`
// receives this sequence's new positions, and `src`, left to the sequences
// that still share it, may be written by them, or freed and reused. Slots of
// `src` past the shared positions may already differ when copied; that is
// harmless, the copied sequence has only reserved them and writes them itself.
struct BlockCopy {
  BlockId src = kNoBlock;
  BlockId dst = kNoBlock;
  bool operator==(const BlockCopy&) const = default;
};

struct PrefixCacheStats {
  int64_t queried_tokens = 0;  // prompt tokens looked up by allocate_prompt()
  int64_t hit_tokens = 0;      // of which found in the cache
  int64_t evicted_blocks = 0;  // cached blocks dropped to be reused
};

class BlockManager {
 public:
  // Throws qllm::Error unless num_blocks > 0 and block_size > 0. `hash` only
  // spreads prefix-cache keys over buckets (tests force collisions with it).
  BlockManager(int num_blocks, int block_size, bool prefix_caching = false,
               ContentHash hash = default_content_hash);

  int num_blocks() const { return pool_.num_blocks(); }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // The longest sequence the whole cache can hold: num_blocks * block_size.
  int64_t capacity_tokens() const { return int64_t(num_blocks()) * block_size_; }
  // Blocks needed for `tokens` positions: ceil(tokens / block_size).
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  // --- new sequences -------------------------------------------------------
  // Whether allocate(seq, num_tokens) would succeed now (for a new id).
  bool can_allocate(int num_tokens) const;
  // Reserves num_tokens positions for a new sequence, without looking up the
  // prefix cache. num_tokens >= 0 (0: an empty table).
  void allocate(SeqId seq, int num_tokens);

  // Whether allocate_prompt(seq, prompt) would succeed now, counting the
  // blocks the prefix cache would supply.
  bool can_allocate_prompt(std::span<const int32_t> prompt) const;
  // Reserves prompt.size() positions for a new sequence, reusing cached
  // blocks for its leading full blocks when prefix caching is on. Returns the
  // number of leading prompt positions whose KV is already in the cache (a
  // multiple of block_size, less than prompt.size(); 0 without caching): they
  // count as computed, the caller computes only the positions after them.
  [[nodiscard]] int allocate_prompt(SeqId seq, std::span<const int32_t> prompt);

  // --- growing, computing, sharing, freeing ----------------------------------
  // Whether append(seq, n) would succeed now.
  bool can_append(SeqId seq, int n) const;
  // Reserves n >= 0 more positions at the end of seq. Takes new blocks only
  // when crossing a block boundary, plus one when the partial last block is
  // shared: seq then gets a fresh block replacing it, and the returned copy
  // (at most one) must be performed as described at BlockCopy.
  [[nodiscard]] std::vector<BlockCopy> append(SeqId seq, int n);

  // Reports that the KV of the next token_ids.size() reserved positions of seq
  // (starting at num_computed(seq)) has been written, with these token ids.
  // With prefix caching, each block this completes is published to the cache;
  // without, only the count is used.
  void mark_computed(SeqId seq, std::span<const int32_t> token_ids);

  // A new sequence `child` holding the same blocks as `parent` (refcount + 1
  // each; no block is taken or copied now). Requires every reserved position
  // of parent to be computed, so the shared blocks hold no pending writes;
  // throws if parent is unknown, child exists, or that is not so.
  void fork(SeqId parent, SeqId child);

  // Drops seq; each of its blocks loses a reference. Blocks left unreferenced
  // become free, or evictable if cached (the last block is evicted first).
  void free(SeqId seq);

  // --- queries -------------------------------------------------------------
  bool contains(SeqId seq) const { return seqs_.count(seq) != 0; }
  int num_seqs() const { return int(seqs_.size()); }
  // Physical block ids of seq, one per block_size positions. The view stays
  // valid until seq is next appended to or freed.
  std::span<const BlockId> block_table(SeqId seq) const;
  int num_tokens(SeqId seq) const;    // reserved positions
  int num_computed(SeqId seq) const;  // positions whose KV is written
  // KV slot of position 0 <= position < num_tokens(seq).
  int64_t slot_of(SeqId seq, int position) const;

  // Blocks a new allocation can take: free plus evictable cached blocks.
  int num_free_blocks() const { return pool_.num_available(); }
  // Of those, the blocks still holding reusable cached content.
  int num_cached_blocks() const { return pool_.num_evictable(); }
  // Fraction of the blocks held by sequences, in [0, 1] (kv_cache_usage_perc
  // / 100): evictable cached blocks count as free.
  double usage() const {
    return double(num_blocks() - num_free_blocks()) / double(num_blocks());
  }
  int refcount(BlockId block) const;
  PrefixCacheStats prefix_cache_stats() const;

  // Aborts with a description unless: every block is either free, evictable
  // or referenced, and on no two lists; each refcount equals the number of
  // block tables holding the block; no table holds a block twice; every table
  // has ceil(num_tokens / block_size) entries; blocks holding reserved,
  // uncomputed positions are not shared; cached blocks hold computed positions
  // only. Cost: O(blocks + total table length).
  void check_invariants() const;

 private:
  struct Seq {
    std::vector<BlockId> table;
    int num_tokens = 0;
    int num_computed = 0;
    CacheId chain = kNoCacheId;    // cache id of the last computed full block
    std::vector<int32_t> partial;  // ids of computed positions past the last full block
  };

  const Seq& get(SeqId seq, const char* op) const;
  Seq& get(SeqId seq, const char* op);
  void check_new(SeqId seq, const char* op) const;
  void check_count(SeqId seq, const char* op, const char* what, int64_t n) const;
  // Cached blocks matching the leading full blocks of prompt (see allocate_prompt).
  std::vector<BlockId> prefix_hits(std::span<const int32_t> prompt) const;
  // Extra blocks append(seq, n) takes (0 when n == 0).
  int64_t append_cost(const Seq& s, int n) const;
  // How many of `hits` are evictable: taking them shrinks the free pool.
  int evictable_among(std::span<const BlockId> hits) const;
  // Throws: `tokens` positions do not fit (whole cache, or `need` new blocks
  // of which only `available` can be taken).
  [[noreturn]] void fail_no_room(SeqId seq, const char* op, int64_t tokens, int64_t need,
                                 int64_t available) const;

  BlockPool pool_;
  int block_size_;
  bool prefix_caching_;
  std::unordered_map<SeqId, Seq> seqs_;
  int64_t queried_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

}  // namespace qllm
