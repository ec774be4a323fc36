// NVTX ranges for host phases (loading, capture, dispatch). Compiled in always;
// they cost a branch when no profiler is attached. Open a profile in Nsight
// Systems to see them under the "qllm" domain.
#pragma once

#include <nvtx3/nvToolsExt.h>

namespace qllm::prof {

struct QllmDomain {
  static constexpr const char* name{"qllm"};
};

// RAII range: `qllm::prof::Range r("load/shard");`
class Range {
 public:
  explicit Range(const char* name) {
    nvtxEventAttributes_t a{};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = name;
    nvtxDomainRangePushEx(domain(), &a);
  }
  ~Range() { nvtxDomainRangePop(domain()); }
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;

 private:
  static nvtxDomainHandle_t domain() {
    static nvtxDomainHandle_t d = nvtxDomainCreateA(QllmDomain::name);
    return d;
  }
};

}  // namespace qllm::prof
