#include "engine/tokenizer/tokenizer.h"

#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer_impl.h"
#include "engine/tokenizer/utf8.h"

namespace qllm {

const std::string& Tokenizer::Impl::token_text(int32_t id) const {
  if (const AddedToken* t = added.by_id(id)) return t->content;
  if (const std::string* t = model->id_to_token(id)) return *t;
  if (id < 0 || id >= vocab_size)
    fail("{}: token id {} is out of range [0, {})", name, id, vocab_size);
  fail("{}: token id {} has no token in the vocabulary", name, id);
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special) const {
  const Impl& im = *impl_;
  std::string repaired;
  std::string_view text = input;
  if (!utf8::is_valid(input)) {
    repaired = utf8::to_lossy(input);
    text = repaired;
  }
  std::vector<int32_t> ids;
  std::vector<PreToken> pieces;
  std::string normalized;
  for (const TextSegment& raw : im.added.split(text, /*normalized_side=*/false)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    if (raw.text.empty()) continue;
    normalized.assign(raw.text);
    if (im.normalizer) im.normalizer->normalize(normalized);
    for (const TextSegment& seg : im.added.split(normalized, /*normalized_side=*/true)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      if (seg.text.empty()) continue;
      pieces.clear();
      pieces.push_back({std::string(seg.text), raw.offset == 0 && seg.offset == 0});
      if (im.pre_tokenizer) im.pre_tokenizer->split(pieces);
      for (const PreToken& p : pieces) im.model->encode(p.text, ids);
    }
  }
  if (add_special) ids = im.post_processor.apply(std::move(ids));
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& im = *impl_;
  DecodeState state(im.decoder);
  std::string out;
  for (int32_t id : ids) {
    const std::string& token = im.token_text(id);
    if (skip_special && im.added.is_special(id)) continue;
    state.push(token, out);
  }
  state.finish(out);
  return out;
}

int Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->added.token_to_id(token)) return id;
  return impl_->model->token_to_id(token);
}

std::string_view Tokenizer::id_to_token(int32_t id) const { return impl_->token_text(id); }

bool Tokenizer::is_special(int32_t id) const { return impl_->added.is_special(id); }

// ---- StreamDecoder --------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : impl_(tokenizer.impl_),
      skip_special_(skip_special),
      state_(std::make_unique<DecodeState>(impl_->decoder)) {}

StreamDecoder::~StreamDecoder() = default;
StreamDecoder::StreamDecoder(StreamDecoder&&) noexcept = default;
StreamDecoder& StreamDecoder::operator=(StreamDecoder&&) noexcept = default;

std::string StreamDecoder::push(int32_t id) {
  const std::string& token = impl_->token_text(id);
  std::string out;
  if (skip_special_ && impl_->added.is_special(id)) return out;
  state_->push(token, out);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  state_->finish(out);
  return out;
}

}  // namespace qllm
