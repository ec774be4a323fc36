// MappedFile (read-only mmap) and SafetensorsFile (a mapped, validated file).
#include "engine/common/error.h"
#include "engine/model/safetensors.h"
#include "profiling/nvtx.h"

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qllm {
namespace {

std::string errno_text(int err) { return std::generic_category().message(err); }

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail("cannot open {}: {}", path.string(), errno_text(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail("cannot stat {}: {}", path.string(), errno_text(errno));
  if (S_ISDIR(st.st_mode)) fail("cannot map {}: it is a directory, not a file", path.string());
  if (!S_ISREG(st.st_mode)) fail("cannot map {}: not a regular file", path.string());
  if (st.st_size == 0) return;  // mmap rejects length 0: an empty span instead
  size_ = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    size_ = 0;
    fail("cannot map {} ({} bytes): {}", path.string(), st.st_size, errno_text(err));
  }
  data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : map_(path) {
  prof::Range r("load/safetensors_header");
  header_ = parse_safetensors(map_.bytes(), path.string());
  index_.reserve(header_.tensors.size());
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

bool SafetensorsFile::contains(std::string_view name) const {
  return index_.count(std::string(name)) != 0;
}

TensorView SafetensorsFile::tensor(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  if (it == index_.end())
    fail("{}: no tensor named '{}' (the file holds {} tensors)", path().string(), name,
         header_.tensors.size());
  const TensorEntry& e = header_.tensors[it->second];
  TensorView v;
  v.name = e.name;
  v.dtype = e.dtype;
  v.shape = e.shape;
  v.data = map_.bytes().data() + header_.data_offset + e.begin;
  v.nbytes = static_cast<size_t>(e.end - e.begin);
  return v;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

}  // namespace qllm
