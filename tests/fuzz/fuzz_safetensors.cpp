// Fuzz target for the safetensors header parser.
//
// qllm::Error is the parser's one legitimate way to refuse an input. Anything
// else is a finding: a crash, a sanitizer report, another exception escaping,
// or an accepted header that breaks the promises of SafetensorsHeader (checked
// below, then every accepted tensor's first and last byte is read so that an
// offset past the buffer shows up under AddressSanitizer).
#include "engine/common/error.h"
#include "engine/model/safetensors.h"

#include <cstdio>
#include <cstdlib>
#include <limits>

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: accepted header violates: %s\n", what);
  std::abort();
}

void check_accepted(std::span<const uint8_t> bytes, const qllm::SafetensorsHeader& h) {
  if (h.data_offset != 8 + h.header_len || h.data_offset > bytes.size()) broken("data_offset");
  if (h.header_len > qllm::kMaxSafetensorsHeader) broken("header_len limit");
  const uint64_t data_size = bytes.size() - h.data_offset;
  uint64_t pos = 0;
  volatile uint8_t sink = 0;
  for (const qllm::TensorEntry& t : h.tensors) {
    if (t.begin != pos) broken("tensors tile the data region in order");
    if (t.end < t.begin || t.end > data_size) broken("offsets inside the data region");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) broken("non-negative dims");
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / uint64_t(d))
        broken("numel overflow");
      numel *= uint64_t(d);
    }
    if (int64_t(numel) != t.numel()) broken("numel()");
    if (numel * qllm::dtype_size(t.dtype) != t.end - t.begin) broken("byte size");
    if (t.end > t.begin) {
      sink = sink ^ bytes[h.data_offset + t.begin];
      sink = sink ^ bytes[h.data_offset + t.end - 1];
    }
    pos = t.end;
  }
  if (pos != data_size) broken("no trailing bytes");
  for (const auto& [k, v] : h.metadata) sink = sink ^ uint8_t(k.size() + v.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  try {
    const qllm::SafetensorsHeader h = qllm::parse_safetensors(bytes, "fuzz.safetensors");
    check_accepted(bytes, h);
  } catch (const qllm::Error&) {
    // Rejected: the expected outcome for most inputs.
  }
  return 0;
}
