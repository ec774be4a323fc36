#!/usr/bin/env bash
# Build dependencies for a GPU machine that cannot reach a package registry.
#
#   bash tools/device-deps.sh fetch     # where apt works: downloads the .deb files
#                                       # into .device-deps/debs (git-ignored)
#   bash tools/device-deps.sh build     # on the GPU machine: unpacks them into
#                                       # .device-deps/prefix, builds qllm in
#                                       # build-device for the local GPU
#   source tools/device-deps.sh env     # sets PATH-like variables for that prefix
#
# The GPU machine needs only nvcc, cmake, ninja and a host C++ compiler.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.device-deps"
PREFIX="$DEPS/prefix"

PKGS=(libyaml-cpp-dev libyaml-cpp0.7 libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
      libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
      libfmt-dev libfmt9 libspdlog-dev libspdlog1.10 libutf8proc-dev libutf8proc2
      libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libssl3 zlib1g-dev libbrotli-dev libbrotli1)

qllm_device_env() {
  local lib="$PREFIX/usr/lib/x86_64-linux-gnu"
  export CMAKE_PREFIX_PATH="$PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export PKG_CONFIG_PATH="$lib/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export CPATH="$PREFIX/usr/include${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
}

case "${1:-}" in
  fetch)
    mkdir -p "$DEPS/debs"
    (cd "$DEPS/debs" && apt-get download "${PKGS[@]}")
    ls -la "$DEPS/debs"
    ;;
  unpack)
    rm -rf "$PREFIX" && mkdir -p "$PREFIX"
    for f in "$DEPS"/debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
    # pkg-config files name /usr as their prefix: point them at ours.
    find "$PREFIX" -name '*.pc' -exec sed -i "s|^prefix=/usr|prefix=$PREFIX/usr|" {} +
    echo "unpacked into $PREFIX"
    ;;
  build)
    "$0" unpack
    qllm_device_env
    arch="${QLLM_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}"
    cmake -S "$ROOT" -B "$ROOT/build-device" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_PREFIX_PATH="$PREFIX/usr"
    cmake --build "$ROOT/build-device" -j "$(nproc)"
    ;;
  env)
    qllm_device_env
    ;;
  *)
    echo "usage: $0 fetch|unpack|build|env" >&2
    exit 2
    ;;
esac
