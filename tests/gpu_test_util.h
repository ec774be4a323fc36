// Helpers for GPU tests: every GPU test starts with QLLM_REQUIRE_GPU(), which
// skips it with the CUDA runtime's reason on a machine without a device.
#pragma once

#include <gtest/gtest.h>

#include "kernels/device_info.h"

#define QLLM_REQUIRE_GPU()                                                         \
  do {                                                                             \
    const auto qllm_report_ = ::qllm::cuda::query_devices();                       \
    if (qllm_report_.devices.empty())                                              \
      GTEST_SKIP() << "no CUDA device (" << qllm_report_.why_none                  \
                   << "): GPU test skipped";                                       \
  } while (0)
