#include "engine/tokenizer/bpe_model.h"

#include "engine/tokenizer/utf8.h"

#include <queue>

namespace qllm {

using tokjson::Json;
using tokjson::Where;

BpeModel::BpeModel(const Json& model, const Where& w) {
  byte_ids_.fill(-1);
  const Json& vocab = tokjson::member(model, "vocab", w);
  if (!vocab.is_object())
    tokjson::bad(w.key("vocab"), fmt::format("expected an object {{token: id}}, got {}",
                                             tokjson::type_name(vocab)));
  vocab_.reserve(vocab.size());
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      tokjson::bad(w.key("vocab"), fmt::format("token \"{}\": expected an id in [0, 2^31), got {}",
                                               token, id.dump()));
    const auto v = static_cast<int32_t>(id.get<int64_t>());
    vocab_.emplace(token, v);
    max_id = std::max(max_id, v);
  }
  by_id_.assign(static_cast<size_t>(max_id + 1), nullptr);
  for (const auto& [token, id] : vocab_) by_id_[id] = &token;

  const Json* unk = tokjson::optional_member(model, "unk_token");
  if (unk != nullptr) {
    if (!unk->is_string()) tokjson::bad(w.key("unk_token"), "expected a string or null");
    auto it = vocab_.find(unk->get<std::string>());
    if (it == vocab_.end())
      tokjson::bad(w.key("unk_token"),
                   fmt::format("unk token \"{}\" is not in model.vocab", unk->get<std::string>()));
    unk_id_ = it->second;
  }
  prefix_ = tokjson::get_string_or(model, "continuing_subword_prefix", w, "");
  suffix_ = tokjson::get_string_or(model, "end_of_word_suffix", w, "");
  fuse_unk_ = tokjson::get_bool_or(model, "fuse_unk", w, false);
  byte_fallback_ = tokjson::get_bool_or(model, "byte_fallback", w, false);
  ignore_merges_ = tokjson::get_bool_or(model, "ignore_merges", w, false);
  if (const Json* d = tokjson::optional_member(model, "dropout")) {
    if (!d->is_number() || d->get<double>() != 0.0)
      tokjson::bad(w.key("dropout"), "BPE dropout is random; only null or 0 is supported");
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
    if (it != vocab_.end()) byte_ids_[b] = it->second;
  }

  const Json& merges = tokjson::member(model, "merges", w);
  if (!merges.is_array())
    tokjson::bad(w.key("merges"),
                 fmt::format("expected an array, got {}", tokjson::type_name(merges)));
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    const Where mw = w.key("merges").index(i);
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      if (s.rfind("#version", 0) == 0) continue;  // a merges.txt header line
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        tokjson::bad(mw,
                     fmt::format("merge \"{}\": expected two tokens separated by one space", s));
      add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1), rank, mw);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      add_merge(m[0].get_ref<const std::string&>(), m[1].get_ref<const std::string&>(), rank, mw);
    } else {
      tokjson::bad(mw, fmt::format("expected a string \"a b\" or a pair [\"a\", \"b\"], got {}",
                                   m.dump().substr(0, 80)));
    }
    ++rank;
  }
}

void BpeModel::add_merge(std::string_view a, std::string_view b, int32_t rank, const Where& w) {
  auto find = [&](std::string_view t) {
    auto it = vocab_.find(t);
    if (it == vocab_.end())
      tokjson::bad(w,
                   fmt::format("merge (\"{}\", \"{}\") refers to unknown token \"{}\"", a, b, t));
    return it->second;
  };
  const int32_t ia = find(a), ib = find(b);
  std::string joined(a);
  joined.append(b.substr(std::min(prefix_.size(), b.size())));
  const int32_t inew = find(joined);
  merges_[pair_key(ia, ib)] = Merge{rank, inew};  // a repeated pair keeps its last rank
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= by_id_.size()) return nullptr;
  return by_id_[id];
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() < kCacheMaxPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (auto it = cache_.find(piece); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(piece, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheCapacity)
      cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

void BpeModel::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    if (n > 0) syms.back().next = n;
    syms.push_back({id, n - 1, -1, true});
  };

  int32_t pending_unk = -1;  // an unk not yet added (fused with later ones)
  std::string composed;
  for (size_t i = 0; i < w.size();) {
    const size_t len = std::min(utf8::char_len(static_cast<unsigned char>(w[i])), w.size() - i);
    std::string_view s = w.substr(i, len);
    const bool first = i == 0, last = i + len >= w.size();
    i += len;
    if ((!first && !prefix_.empty()) || (last && !suffix_.empty())) {
      composed.assign(first ? "" : prefix_);
      composed.append(s);
      if (last) composed.append(suffix_);
      s = composed;
    }
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : s) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {  // Hugging Face adds them before a pending unk; so do we
        for (char c : s) add(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);

  // Merge: a min-heap on (rank, position); stale entries are skipped.
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> queue;
  auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t k = 0; k + 1 < syms.size(); ++k) {
    if (const Merge* m = lookup(syms[k].id, syms[k + 1].id))
      queue.push({m->rank, static_cast<int32_t>(k), m->new_id});
  }
  while (!queue.empty()) {
    const Cand top = queue.top();
    queue.pop();
    Symbol& cur = syms[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const Symbol right = syms[cur.next];
    const Merge* m = lookup(cur.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;
    syms[cur.next].alive = false;
    cur.id = top.new_id;
    cur.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const Merge* pm = lookup(syms[cur.prev].id, cur.id))
        queue.push({pm->rank, cur.prev, pm->new_id});
    }
    if (cur.next >= 0) {
      if (const Merge* nm = lookup(cur.id, syms[cur.next].id))
        queue.push({nm->rank, top.pos, nm->new_id});
    }
  }
  for (const Symbol& s : syms)
    if (s.alive) out.push_back(s.id);
}

}  // namespace qllm
