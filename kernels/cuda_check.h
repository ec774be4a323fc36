// The one family of CUDA error checks. Failures go through an out-of-line
// [[noreturn]] reporter that prints the failed call, the CUDA error, file and
// line, then aborts: a CUDA error inside the engine is a bug or a dead device,
// never user input.
#pragma once

#include <cuda_runtime_api.h>

namespace qllm::cuda {

[[noreturn]] void cuda_failed(cudaError_t err, const char* expr, const char* file, int line);

}  // namespace qllm::cuda

#define QLLM_CUDA_CHECK(expr)                                                  \
  do {                                                                         \
    cudaError_t qllm_err_ = (expr);                                            \
    if (qllm_err_ != cudaSuccess)                                              \
      ::qllm::cuda::cuda_failed(qllm_err_, #expr, __FILE__, __LINE__);         \
  } while (0)

// After a kernel launch: catches bad launch configurations at once.
#define QLLM_CUDA_CHECK_LAUNCH() QLLM_CUDA_CHECK(cudaGetLastError())
