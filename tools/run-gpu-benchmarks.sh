#!/usr/bin/env bash
# Every GPU benchmark of the CUDA backend into one folder, on a GPU machine
# after `bash tools/device-deps.sh build` (which builds into build-device).
#
#   bash tools/run-gpu-benchmarks.sh OUT_DIR [BUILD_DIR]     # BUILD_DIR: build-device
#
# Steps, in this order (logs and JSON in OUT_DIR):
#   copy            qllm_bench_copy --json              copy.json, copy.log
#   gemm            qllm_bench_gemm --json              gemm.json, gemm.log
#   model-olmoe     qllm_bench_model --model olmoe-1b-7b     model-olmoe-1b-7b.{json,log}
#   model-mixtral   qllm_bench_model --model mixtral-8x7b    model-mixtral-8x7b.{json,log}
#                   (as many layers as fit; the JSON says how many)
#   hf              profiling/hf_side_by_side.py        hf_side_by_side.json, hf.log
#                   (OLMoE-1B-7B shape with 2 layers, checkpoint written under
#                   $QLLM_BENCH_SCRATCH, default /tmp/qllm-bench-scratch)
#   model-qwen3     qllm_bench_model --model qwen3-30b-a3b (only with QLLM_BENCH_QWEN3=1)
# plus nvidia-smi.txt and summary.txt (each step: ok / failed / timed out /
# skipped, and its seconds).
#
# A failing step is reported and the rest still run. The whole run keeps to
# a budget (QLLM_BENCH_BUDGET_S, default 540 s): each step runs under
# `timeout` with at most its own cap and what is left of the budget, and a
# step is skipped when less than its minimum is left. Exits 0 when every
# step that ran succeeded, 1 otherwise.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ $# -lt 1 || $# -gt 2 || "$1" == -h || "$1" == --help ]]; then
  echo "usage: $0 OUT_DIR [BUILD_DIR]   (after: bash tools/device-deps.sh build)" >&2
  exit 2
fi
OUT="$1"
BUILD="${2:-$ROOT/build-device}"
BUDGET="${QLLM_BENCH_BUDGET_S:-540}"
SCRATCH="${QLLM_BENCH_SCRATCH:-/tmp/qllm-bench-scratch}"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"

# The shared libraries tools/device-deps.sh unpacked (fmt, spdlog, yaml-cpp...).
if [[ -d "$ROOT/.device-deps/prefix" ]]; then
  # shellcheck source=tools/device-deps.sh
  source "$ROOT/tools/device-deps.sh" env
  set +e
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

COMMIT="${QLLM_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
export QLLM_COMMIT="$COMMIT"
START=$SECONDS
SUMMARY="$OUT/summary.txt"
FAILED=0
{
  echo "qllm GPU benchmarks, commit $COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET} s"
  echo "build: $BUILD"
} > "$SUMMARY"

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed (see nvidia-smi.txt)" >> "$SUMMARY"

# step NAME CAP_S MIN_S STDOUT CMD...: runs CMD under the budget; STDOUT is a
# file for the command's standard output (its JSON), or - to keep it in the log.
step() {
  local name="$1" cap="$2" min="$3" stdout="$4"
  shift 4
  local left=$((BUDGET - (SECONDS - START) - 10))  # 10 s for timeout's kill grace and the summary
  if ((left < min)); then
    echo "== $name: skipped ($((left > 0 ? left : 0)) s left of the budget, needs $min)"
    printf '%-14s skipped (budget)\n' "$name" >> "$SUMMARY"
    return
  fi
  local t=$((cap < left ? cap : left)) t0=$SECONDS rc
  echo "== $name (at most $t s): $*"
  if [[ "$stdout" == - ]]; then
    timeout --kill-after=5 "$t" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
  else
    timeout --kill-after=5 "$t" "$@" > "$stdout" 2> >(tee "$OUT/$name.log" >&2)
    rc=$?
    [[ -s "$stdout" ]] || rm -f "$stdout"
  fi
  local took=$((SECONDS - t0)) status
  case $rc in
    0) status="ok" ;;
    124 | 137) status="timed out after $t s" ;;
    2) status="failed (status 2: no CUDA device, or a missing dependency; see $name.log)" ;;
    *) status="failed (status $rc; see $name.log)" ;;
  esac
  [[ $rc -eq 0 ]] || FAILED=1
  echo "== $name: $status, $took s"
  printf '%-14s %s, %d s\n' "$name" "$status" "$took" >> "$SUMMARY"
}

P="$BUILD/profiling"
step copy 60 10 "$OUT/copy.json" "$P/qllm_bench_copy" --json
step gemm 120 20 "$OUT/gemm.json" "$P/qllm_bench_gemm" --json
step model-olmoe 150 40 - "$P/qllm_bench_model" --model olmoe-1b-7b --commit "$COMMIT" \
  --json "$OUT/model-olmoe-1b-7b.json"
step model-mixtral 200 60 - "$P/qllm_bench_model" --model mixtral-8x7b --commit "$COMMIT" \
  --json "$OUT/model-mixtral-8x7b.json"
step hf 170 60 - python3 "$ROOT/profiling/hf_side_by_side.py" --out "$OUT" --scratch "$SCRATCH" \
  --bench "$P/qllm_bench_model" --qllm "$BUILD/qllm" --commit "$COMMIT"
if [[ "${QLLM_BENCH_QWEN3:-0}" == 1 ]]; then
  step model-qwen3 240 120 - "$P/qllm_bench_model" --model qwen3-30b-a3b --commit "$COMMIT" \
    --json "$OUT/model-qwen3-30b-a3b.json"
fi

echo "total $((SECONDS - START)) s" >> "$SUMMARY"
echo
cat "$SUMMARY"
exit "$FAILED"
