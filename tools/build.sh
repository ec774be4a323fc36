#!/usr/bin/env bash
# Configures and builds qllm in ./build. Extra arguments go to CMake, e.g.
#   bash tools/build.sh -DCMAKE_CUDA_ARCHITECTURES=90
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake -S . -B build -G Ninja "$@"
cmake --build build -j "${QLLM_JOBS:-$(nproc)}"
