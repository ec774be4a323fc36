#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors parser with clang and runs it
# for a bounded time:
#   bash tools/fuzz.sh [SECONDS=60] [extra libFuzzer flags...]
# Build folder: $QLLM_FUZZ_BUILD (default build-fuzz). The committed seed corpus
# (tests/fuzz/corpus/safetensors) is only read; new inputs go to
# <build>/fuzz-corpus, crashes to <build>/fuzz-artifacts/. Exit status is
# non-zero when libFuzzer reports a finding; add the crash file to the seed
# corpus once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
build="${QLLM_FUZZ_BUILD:-build-fuzz}"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

# CUDA stays enabled in the project; nvcc keeps g++ as its host compiler.
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CUDA_HOST_COMPILER=g++ \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQLLM_FUZZ=ON >/dev/null
cmake --build "$build" --target fuzz_safetensors

fuzzer="$build/tests/fuzz/fuzz_safetensors"
work="$build/fuzz-corpus"
artifacts="$build/fuzz-artifacts"
mkdir -p "$work" "$artifacts"
echo "fuzz.sh: running $fuzzer for ${seconds}s"
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -dict=tests/fuzz/safetensors.dict \
  -artifact_prefix="$artifacts/" "$@" "$work" tests/fuzz/corpus/safetensors
