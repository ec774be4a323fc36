// safetensors header parser: every byte of the file is untrusted.
//
// The JSON header is read with nlohmann's SAX interface and a small state
// machine that accepts only the safetensors schema, so that duplicate keys are
// seen (the DOM parser keeps the last one silently), nothing nests deeper than
// three levels, and every message can name the tensor being read.
//
// Rules, matching the Python `safetensors` library (0.8) except where noted:
//  * u64 LE header length N <= kMaxSafetensorsHeader and 8 + N <= file size;
//  * the header is one JSON object (leading and trailing JSON whitespace
//    allowed, nothing else after it);
//  * each tensor entry is an object with exactly the keys dtype (a known name),
//    shape (non-negative integers) and data_offsets ([begin, end]); Python
//    ignores unknown keys, we reject them;
//  * numel x dtype size == end - begin, computed without overflow;
//  * sorted by (begin, end), the regions tile [0, data size) exactly: the first
//    starts at 0, each starts where the previous ended, the last ends at the
//    end of the file (no holes, no overlaps, no trailing bytes). Empty tensors
//    may sit at any boundary, as in Python;
//  * no duplicate tensor names or metadata keys (Python keeps the last one);
//  * "__metadata__" is an object of string values, or null (= none).
#include "engine/model/safetensors.h"

#include "engine/common/error.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace qllm {

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

using json = nlohmann::json;

// Length of the well-formed UTF-8 sequence at s[i], or 0 when it is not one.
size_t utf8_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (d & 0x3Fu);
  }
  const bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
  if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// A name, key or parser message as it appears in an error: quoted, control
// bytes and bytes that are not UTF-8 escaped as \xNN (the message itself is
// always valid UTF-8), cut after `max_bytes` so a hostile header cannot make
// it huge.
std::string quote(std::string_view s, size_t max_bytes = 120) {
  std::string out = "'";
  size_t i = 0;
  while (i < s.size() && i < max_bytes) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = utf8_len(s, i);
    if (n == 0 || c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  out += i < s.size() ? "'..." : "'";
  return out;
}

std::string known_dtypes() {
  std::string s;
  for (int i = 0; i <= int(DType::U64); ++i) {
    if (i) s += ", ";
    s += dtype_name(DType(i));
  }
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

constexpr std::string_view kMetadataKey = "__metadata__";

// SAX handler for the header. Throws qllm::Error on the first violation.
class HeaderReader {
 public:
  HeaderReader(std::string_view what, uint64_t data_size) : what_(what), data_size_(data_size) {}

  std::vector<TensorEntry> take_tensors() { return std::move(tensors_); }
  std::map<std::string, std::string> take_metadata() { return std::move(metadata_); }

  // --- nlohmann SAX interface -------------------------------------------------
  bool null() {
    if (state_ == State::RootValue && in_metadata_key_) {  // "__metadata__": null
      state_ = State::Root;
      return true;
    }
    unexpected("null");
  }
  bool boolean(bool) { unexpected("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    // nlohmann reports non-negative integers through number_unsigned, so v < 0.
    if (state_ == State::Shape)
      fail("{}: tensor {}: shape dimension {} is negative ({})", what_, quote(cur_.name),
           cur_.shape.size(), v);
    if (state_ == State::Offsets)
      fail("{}: tensor {}: data_offsets[{}] is negative ({})", what_, quote(cur_.name),
           n_offsets_, v);
    unexpected(fmt::format("the number {}", v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (state_ == State::Shape) {
      if (v > uint64_t(std::numeric_limits<int64_t>::max()))
        fail("{}: tensor {}: shape dimension {} is too large ({})", what_, quote(cur_.name),
             cur_.shape.size(), v);
      cur_.shape.push_back(int64_t(v));
      return true;
    }
    if (state_ == State::Offsets) {
      if (n_offsets_ >= 2)
        fail("{}: tensor {}: data_offsets must hold exactly two integers [begin, end], found "
             "more",
             what_, quote(cur_.name));
      (n_offsets_ == 0 ? cur_.begin : cur_.end) = v;
      ++n_offsets_;
      return true;
    }
    unexpected(fmt::format("the number {}", v));
  }
  bool number_float(json::number_float_t, const std::string& s) {
    const std::string found = fmt::format("the number {}", s.substr(0, 40));
    if (state_ == State::Shape)
      fail("{}: tensor {}: shape dimension {} must be a non-negative integer, found {}", what_,
           quote(cur_.name), cur_.shape.size(), found);
    if (state_ == State::Offsets)
      fail("{}: tensor {}: data_offsets[{}] must be a non-negative 64-bit integer, found {}",
           what_, quote(cur_.name), n_offsets_, found);
    unexpected(found);
  }
  bool string(std::string& s) {
    if (state_ == State::Field && field_ == Field::DType) {
      const auto t = parse_dtype(s);
      if (!t)
        fail("{}: tensor {}: unknown dtype {} (known: {})", what_, quote(cur_.name), quote(s),
             known_dtypes());
      cur_.dtype = *t;
      state_ = State::Tensor;
      return true;
    }
    if (state_ == State::MetaValue) {
      metadata_[meta_key_] = std::move(s);
      state_ = State::Meta;
      return true;
    }
    unexpected("a string");
  }
  bool binary(json::binary_t&) { unexpected("binary data"); }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::Start:
        state_ = State::Root;
        return true;
      case State::RootValue:
        if (in_metadata_key_) {
          state_ = State::Meta;
        } else {
          state_ = State::Tensor;
          seen_fields_ = 0;
          n_offsets_ = 0;
        }
        return true;
      default:
        unexpected("an object");
    }
  }
  bool key(std::string& k) {
    switch (state_) {
      case State::Root:
        in_metadata_key_ = (k == kMetadataKey);
        if (in_metadata_key_) {
          if (have_metadata_) fail("{}: header: key \"__metadata__\" appears twice", what_);
          have_metadata_ = true;
        } else {
          if (!names_.insert(k).second)
            fail("{}: tensor {} appears twice in the header (duplicate names are not allowed)",
                 what_, quote(k));
          cur_ = TensorEntry{};
          cur_.name = std::move(k);
        }
        state_ = State::RootValue;
        return true;
      case State::Tensor: {
        Field f;
        if (k == "dtype")
          f = Field::DType;
        else if (k == "shape")
          f = Field::Shape;
        else if (k == "data_offsets")
          f = Field::Offsets;
        else
          fail("{}: tensor {}: unexpected key {} (an entry has exactly dtype, shape and "
               "data_offsets)",
               what_, quote(cur_.name), quote(k));
        const unsigned bit = 1u << unsigned(f);
        if (seen_fields_ & bit)
          fail("{}: tensor {}: key {} appears twice", what_, quote(cur_.name), quote(k));
        seen_fields_ |= bit;
        field_ = f;
        state_ = State::Field;
        return true;
      }
      case State::Meta:
        if (metadata_.count(k))
          fail("{}: __metadata__ key {} appears twice", what_, quote(k));
        meta_key_ = std::move(k);
        state_ = State::MetaValue;
        return true;
      default:
        unexpected("a key");  // not reachable with a conforming SAX parser
    }
  }
  bool end_object() {
    switch (state_) {
      case State::Root:
        state_ = State::Done;
        return true;
      case State::Meta:
        state_ = State::Root;
        return true;
      case State::Tensor:
        finish_tensor();
        state_ = State::Root;
        return true;
      default:
        unexpected("the end of an object");
    }
  }
  bool start_array(std::size_t) {
    if (state_ == State::Field && field_ == Field::Shape) {
      state_ = State::Shape;
      return true;
    }
    if (state_ == State::Field && field_ == Field::Offsets) {
      state_ = State::Offsets;
      return true;
    }
    unexpected("an array");
  }
  bool end_array() {
    if (state_ == State::Shape) {
      state_ = State::Tensor;
      return true;
    }
    if (state_ == State::Offsets) {
      if (n_offsets_ != 2)
        fail("{}: tensor {}: data_offsets must hold exactly two integers [begin, end], found {}",
             what_, quote(cur_.name), n_offsets_);
      state_ = State::Tensor;
      return true;
    }
    unexpected("the end of an array");
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) {
    std::string msg = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> the tail.
    if (const auto p = msg.find("] "); p != std::string::npos) msg.erase(0, p + 2);
    fail("{}: header is not valid JSON (near header byte {}): {}", what_, pos, quote(msg, 300));
  }

 private:
  enum class State { Start, Root, RootValue, Tensor, Field, Shape, Offsets, Meta, MetaValue, Done };
  enum class Field : unsigned { DType = 0, Shape = 1, Offsets = 2 };

  [[noreturn]] void unexpected(std::string_view found) const {
    switch (state_) {
      case State::Start:
        fail("{}: header must be a JSON object, found {}", what_, found);
      case State::RootValue:
        if (in_metadata_key_)
          fail("{}: __metadata__ must be an object of string values, found {}", what_, found);
        fail("{}: tensor {}: entry must be an object with dtype, shape and data_offsets, "
             "found {}",
             what_, quote(cur_.name), found);
      case State::Field:
        switch (field_) {
          case Field::DType:
            fail("{}: tensor {}: dtype must be a string, found {}", what_, quote(cur_.name),
                 found);
          case Field::Shape:
            fail("{}: tensor {}: shape must be an array of non-negative integers, found {}",
                 what_, quote(cur_.name), found);
          case Field::Offsets:
            fail("{}: tensor {}: data_offsets must be an array [begin, end] of two "
                 "non-negative integers, found {}",
                 what_, quote(cur_.name), found);
        }
        break;
      case State::Shape:
        fail("{}: tensor {}: shape dimension {} must be a non-negative integer, found {}", what_,
             quote(cur_.name), cur_.shape.size(), found);
      case State::Offsets:
        fail("{}: tensor {}: data_offsets[{}] must be a non-negative integer, found {}", what_,
             quote(cur_.name), n_offsets_, found);
      case State::MetaValue:
        fail("{}: __metadata__ key {} must have a string value, found {}", what_,
             quote(meta_key_), found);
      default:
        break;
    }
    fail("{}: malformed header: unexpected {}", what_, found);
  }

  // Per-entry checks once the entry's object closes.
  void finish_tensor() {
    static constexpr const char* kNames[] = {"dtype", "shape", "data_offsets"};
    for (unsigned f = 0; f < 3; ++f)
      if (!(seen_fields_ & (1u << f)))
        fail("{}: tensor {}: missing key '{}'", what_, quote(cur_.name), kNames[f]);
    const std::string& n = cur_.name;
    if (cur_.begin > cur_.end)
      fail("{}: tensor {}: data_offsets [{}, {}] end before they begin", what_, quote(n),
           cur_.begin, cur_.end);
    if (cur_.end > data_size_)
      fail("{}: tensor {}: data_offsets [{}, {}] run past the end of the data region ({} bytes)",
           what_, quote(n), cur_.begin, cur_.end, data_size_);
    uint64_t numel = 1;
    for (int64_t d : cur_.shape) {
      if (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(d))
        fail("{}: tensor {}: shape {} has too many elements (overflows 64 bits)", what_,
             quote(n), shape_str(cur_.shape));
      numel *= uint64_t(d);
    }
    const uint64_t esize = dtype_size(cur_.dtype);
    if (numel > std::numeric_limits<uint64_t>::max() / esize)
      fail("{}: tensor {}: shape {} of {} is too large (byte size overflows 64 bits)", what_,
           quote(n), shape_str(cur_.shape), dtype_name(cur_.dtype));
    const uint64_t nbytes = numel * esize;
    if (nbytes != cur_.end - cur_.begin)
      fail("{}: tensor {}: shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {} "
           "(size mismatch)",
           what_, quote(n), shape_str(cur_.shape), dtype_name(cur_.dtype), nbytes, cur_.begin,
           cur_.end, cur_.end - cur_.begin);
    tensors_.push_back(std::move(cur_));
    cur_ = TensorEntry{};
  }

  std::string_view what_;
  uint64_t data_size_;
  State state_ = State::Start;
  Field field_ = Field::DType;
  bool in_metadata_key_ = false;
  bool have_metadata_ = false;
  unsigned seen_fields_ = 0;
  size_t n_offsets_ = 0;
  TensorEntry cur_;
  std::string meta_key_;
  std::unordered_set<std::string> names_;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

bool is_json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Sorted by (begin, end), the regions must tile [0, data_size) exactly.
void check_tiling(const std::vector<TensorEntry>& ts, uint64_t data_size, uint64_t data_offset,
                  std::string_view what) {
  uint64_t pos = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& t : ts) {
    if (t.begin > pos) {
      if (!prev)
        fail("{}: tensor {}: data_offsets [{}, {}] leave a hole of {} bytes at the start of the "
             "data region (the first tensor must begin at offset 0)",
             what, quote(t.name), t.begin, t.end, t.begin);
      fail("{}: tensor {}: data_offsets [{}, {}] leave a hole of {} bytes after tensor {} "
           "(which ends at {})",
           what, quote(t.name), t.begin, t.end, t.begin - pos, quote(prev->name), pos);
    }
    if (t.begin < pos)
      fail("{}: tensor {}: data_offsets [{}, {}] overlap tensor {} [{}, {}]", what,
           quote(t.name), t.begin, t.end, quote(prev->name), prev->begin, prev->end);
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size) {
    if (!prev)
      fail("{}: the header declares no tensors but the data region (from file byte {}) holds "
           "{} trailing bytes",
           what, data_offset, data_size);
    fail("{}: the data region has {} trailing bytes after the last tensor {} (which ends at "
         "{}; the data region holds {} bytes from file byte {})",
         what, data_size - pos, quote(prev->name), pos, data_size, data_offset);
  }
}

}  // namespace

SafetensorsHeader parse_safetensors(std::span<const uint8_t> bytes, std::string_view what) {
  if (bytes.size() < 8)
    fail("{}: file is {} bytes, too short for a safetensors file (it must start with an 8-byte "
         "header length)",
         what, bytes.size());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[size_t(i)];
  if (n > kMaxSafetensorsHeader)
    fail("{}: header length {} exceeds the limit of {} bytes (not a safetensors file, or "
         "corrupt)",
         what, n, kMaxSafetensorsHeader);
  if (n > bytes.size() - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes; the header would end at "
         "byte {}): truncated file?",
         what, n, bytes.size(), 8 + n);

  SafetensorsHeader h;
  h.header_len = n;
  h.data_offset = 8 + n;
  const uint64_t data_size = bytes.size() - h.data_offset;

  const auto* first = reinterpret_cast<const char*>(bytes.data() + 8);
  const auto* last = first + n;
  const auto* p = reinterpret_cast<const uint8_t*>(first);
  const auto* e = reinterpret_cast<const uint8_t*>(last);
  while (p != e && is_json_space(*p)) ++p;
  if (p == e) fail("{}: header ({} bytes) is empty or blank, expected a JSON object", what, n);
  if (*p != '{')
    fail("{}: header must be a JSON object starting with '{{', found byte 0x{:02x} at header "
         "byte {}",
         what, *p, p - reinterpret_cast<const uint8_t*>(first));

  // nlohmann's lexer takes a NUL byte for the end of the input, which would let
  // anything after one through; JSON text never contains a raw NUL.
  if (const void* z = std::memchr(first, 0, n))
    fail("{}: header is not valid JSON: NUL byte at header byte {} (pad with spaces, not NULs)",
         what, static_cast<const char*>(z) - first);

  HeaderReader reader(what, data_size);
  json::sax_parse(first, last, &reader, json::input_format_t::json, /*strict=*/true,
                  /*ignore_comments=*/false);
  h.tensors = reader.take_tensors();
  h.metadata = reader.take_metadata();
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const TensorEntry& a, const TensorEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  check_tiling(h.tensors, data_size, h.data_offset, what);
  return h;
}

}  // namespace qllm
