// safetensors: parse (validated, never trusting the file), memory-map, write.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
//   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...,
//    "__metadata__": {"k": "v"}}
// then the data region; offsets are relative to its first byte. The parser
// checks every rule in MODELS.md: N in range, JSON object, known dtypes,
// shape x dtype size == e - b, offsets inside the file, no overlaps, no holes,
// no duplicate names. Errors are qllm::Error naming the file and the tensor.
#pragma once

#include "engine/common/dtype.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qllm {

// Largest header accepted (MODELS.md: reject absurd N).
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data region
  int64_t numel() const;        // product of shape (1 for 0-d)
};

struct SafetensorsHeader {
  uint64_t header_len = 0;   // N
  uint64_t data_offset = 0;  // 8 + N: where the data region starts in the file
  std::vector<TensorEntry> tensors;  // in the order of their data offsets
  std::map<std::string, std::string> metadata;
};

// Parses and validates the header of a complete safetensors file held in
// `bytes`. `what` names the file in error messages. Never reads outside
// `bytes`; throws qllm::Error on any malformation.
SafetensorsHeader parse_safetensors(std::span<const uint8_t> bytes, std::string_view what);

// A read-only memory mapping of a whole file (RAII).
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);  // throws qllm::Error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A tensor's bytes inside a mapped file. `data` may be unaligned: convert with
// to_f32() or memcpy, never cast to a typed pointer without checking.
struct TensorView {
  std::string_view name;
  DType dtype = DType::F32;
  std::span<const int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

// One memory-mapped, validated safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);  // throws qllm::Error

  const std::filesystem::path& path() const { return map_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  bool contains(std::string_view name) const;
  // Throws qllm::Error naming the file when the tensor is absent.
  TensorView tensor(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  MappedFile map_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> index_;
};

// Streaming writer: declare every tensor first, then write(); each tensor's
// bytes come from a callback that fills a buffer chunk by chunk, so multi-GB
// files are written without holding them in memory.
class SafetensorsWriter {
 public:
  // Fills `out` (out.size() bytes) with the tensor's bytes starting at byte
  // `offset` of that tensor.
  using Fill = std::function<void(uint64_t offset, std::span<uint8_t> out)>;

  void add(std::string name, DType dtype, std::vector<int64_t> shape, Fill fill);
  // Convenience: a tensor whose bytes are already in memory (copied).
  void add_bytes(std::string name, DType dtype, std::vector<int64_t> shape,
                 std::span<const uint8_t> bytes);
  void set_metadata(std::string key, std::string value);
  uint64_t data_bytes() const;  // total size of the data region so far
  // Writes the file (header padded to 8 bytes). `progress(done, total)` is
  // called as bytes are written, if given. Throws qllm::Error on I/O failure.
  void write(const std::filesystem::path& path,
             const std::function<void(uint64_t, uint64_t)>& progress = {}) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    Fill fill;
  };
  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace qllm
