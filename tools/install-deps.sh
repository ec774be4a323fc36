#!/usr/bin/env bash
# Installs what qllm needs to build and test from Debian's packages (run as
# root, or with sudo available). The CUDA toolkit itself is expected at
# /usr/local/cuda or on PATH; it is not installed here.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config git python3
  libyaml-cpp-dev libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
  libpcre2-dev libfmt-dev libspdlog-dev libutf8proc-dev
  libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev   # the HTTP server and bench client
  clang libclang-rt-14-dev   # libFuzzer for the bounded fuzz run
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all build dependencies present"
fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "error: the CUDA toolkit (nvcc) was not found on PATH or in /usr/local/cuda;" >&2
  echo "       install CUDA 12 or newer (qllm compiles CUDA code even where no GPU is present)" >&2
  exit 1
fi
