#!/usr/bin/env bash
# Fresh machine to first output: installs the build dependencies, builds qllm,
# and runs the main job on the built-in default model (a tiny seeded
# Mixtral-shaped checkpoint written on first use): one prompt, then a
# mixed-priority workload under two policies. Without a GPU the engine runs on
# the CPU dispatcher.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
arch_flag=()
if command -v nvidia-smi >/dev/null 2>&1; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . || true)
  [ -n "$cc" ] && arch_flag=("-DCMAKE_CUDA_ARCHITECTURES=$cc")
fi
bash tools/build.sh "${arch_flag[@]}"
./build/qllm devices
./build/qllm generate --prompt "The capital of France is" -n 24
# The main job: LS requests on top of saturating BE work, the iteration-level
# FCFS baseline against expert-granularity preemption, on the dispatcher that
# scheduler.dispatcher=auto picks (cpu where there is no GPU).
./build/qllm run --workload configs/workloads/tiny-contended.yaml \
  --policies fcfs-iteration,priority-expert --out qllm-run.json "$@"
