// SafetensorsWriter: streams a safetensors file through one fixed buffer.
//
// The file is written to "<path>.partial" and renamed into place at the end,
// so a failed or interrupted write never leaves a file that looks complete.
#include "engine/common/error.h"
#include "engine/model/safetensors.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <limits>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace qllm {
namespace {

constexpr size_t kChunk = 4u << 20;  // bytes per write() call

std::string errno_text(int err) { return std::generic_category().message(err); }

// Throws unless `s` can be stored in the JSON header (valid UTF-8).
void check_utf8(const std::string& s, std::string_view role) {
  try {
    (void)nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    std::string shown;
    for (unsigned char c : s.substr(0, 120))
      shown += (c >= 0x20 && c < 0x7f) ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
    fail("safetensors writer: {} is not valid UTF-8: '{}'", role, shown);
  }
}

class OutFile {
 public:
  explicit OutFile(std::filesystem::path final_path)
      : final_(std::move(final_path)), tmp_(final_.string() + ".partial") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create {}: {}", tmp_.string(), errno_text(errno));
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("cannot write {}: {}", tmp_.string(), errno_text(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void commit() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot write {}: {}", tmp_.string(), errno_text(errno));
    std::error_code ec;
    std::filesystem::rename(tmp_, final_, ec);
    if (ec) fail("cannot rename {} to {}: {}", tmp_.string(), final_.string(), ec.message());
    committed_ = true;
  }

 private:
  std::filesystem::path final_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<int64_t> shape,
                            Fill fill) {
  if (name == "__metadata__")
    fail("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  check_utf8(name, "tensor name");
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0)
      fail("safetensors writer: tensor '{}': negative dimension {} in shape [{}]", name, d,
           fmt::join(shape, ", "));
    if (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(d))
      fail("safetensors writer: tensor '{}': shape [{}] has too many elements", name,
           fmt::join(shape, ", "));
    numel *= uint64_t(d);
  }
  const uint64_t esize = dtype_size(dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / esize)
    fail("safetensors writer: tensor '{}': byte size overflows 64 bits", name);
  const uint64_t nbytes = numel * esize;
  if (nbytes > 0 && !fill) fail("safetensors writer: tensor '{}': no fill callback", name);
  tensors_.push_back(Pending{std::move(name), dtype, std::move(shape), nbytes, std::move(fill)});
}

void SafetensorsWriter::add_bytes(std::string name, DType dtype, std::vector<int64_t> shape,
                                  std::span<const uint8_t> bytes) {
  auto data = std::make_shared<const std::vector<uint8_t>>(bytes.begin(), bytes.end());
  const size_t before = tensors_.size();
  std::string n = name;
  add(std::move(name), dtype, std::move(shape),
      [data](uint64_t offset, std::span<uint8_t> out) {
        std::copy_n(data->begin() + static_cast<std::ptrdiff_t>(offset), out.size(), out.begin());
      });
  if (tensors_.size() > before && tensors_.back().nbytes != bytes.size()) {
    const uint64_t want = tensors_.back().nbytes;
    tensors_.pop_back();
    fail("safetensors writer: tensor '{}': shape and dtype need {} bytes, {} given", n, want,
         bytes.size());
  }
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  check_utf8(key, "metadata key");
  check_utf8(value, fmt::format("metadata value of '{}'", key));
  metadata_[std::move(key)] = std::move(value);
}

uint64_t SafetensorsWriter::data_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.nbytes;
  return n;
}

void SafetensorsWriter::write(const std::filesystem::path& path,
                              const std::function<void(uint64_t, uint64_t)>& progress) const {
  {  // Duplicate names, found by sorting (declaration may hold tens of thousands).
    std::vector<std::string_view> names;
    names.reserve(tensors_.size());
    for (const auto& t : tensors_) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end())
      fail("safetensors writer: {}: tensor '{}' was added twice", path.string(), *dup);
  }

  // Header: metadata first, then tensors in declaration order, offsets in that
  // order. Built as text: a JSON object with key lookup would make this
  // quadratic in the number of tensors.
  std::string header = "{";
  if (!metadata_.empty()) header += "\"__metadata__\":" + nlohmann::json(metadata_).dump();
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    if (t.nbytes > std::numeric_limits<uint64_t>::max() - offset)
      fail("safetensors writer: {}: total data size overflows 64 bits", path.string());
    if (header.size() > 1) header += ',';
    fmt::format_to(std::back_inserter(header),
                   R"({}:{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}})",
                   nlohmann::json(t.name).dump(), dtype_name(t.dtype), fmt::join(t.shape, ","),
                   offset, offset + t.nbytes);
    offset += t.nbytes;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kMaxSafetensorsHeader)
    fail("safetensors writer: {}: header of {} bytes exceeds the limit of {}", path.string(),
         header.size(), kMaxSafetensorsHeader);

  const uint64_t total = 8 + header.size() + offset;
  uint64_t done = 0;
  OutFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  out.write(len, 8);
  out.write(reinterpret_cast<const uint8_t*>(header.data()), header.size());
  done += 8 + header.size();
  if (progress) progress(done, total);

  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(kChunk, offset)));
  size_t fill_pos = 0;  // bytes of buf holding data not yet written
  auto flush = [&] {
    out.write(buf.data(), fill_pos);
    done += fill_pos;
    fill_pos = 0;
    if (progress) progress(done, total);
  };
  for (const auto& t : tensors_) {
    uint64_t at = 0;
    while (at < t.nbytes) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(t.nbytes - at, buf.size() - fill_pos));
      t.fill(at, std::span<uint8_t>(buf.data() + fill_pos, n));
      fill_pos += n;
      at += n;
      if (fill_pos == buf.size()) flush();
    }
  }
  if (fill_pos > 0) flush();
  out.commit();
}

}  // namespace qllm
