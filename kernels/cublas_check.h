// The cuBLAS member of the check-macro family (kernels/cuda_check.h has the
// CUDA runtime's). A failed cuBLAS/cuBLASLt call inside the engine is a bug or
// a dead device: the out-of-line [[noreturn]] reporter prints the status name
// and text, the failed call, file and line, then aborts.
#pragma once

#include <cublasLt.h>

namespace qllm::cuda {

[[noreturn]] void cublas_failed(cublasStatus_t status, const char* expr, const char* file, int line);

}  // namespace qllm::cuda

#define QLLM_CUBLAS_CHECK(expr)                                                \
  do {                                                                         \
    cublasStatus_t qllm_status_ = (expr);                                      \
    if (qllm_status_ != CUBLAS_STATUS_SUCCESS)                                 \
      ::qllm::cuda::cublas_failed(qllm_status_, #expr, __FILE__, __LINE__);    \
  } while (0)
