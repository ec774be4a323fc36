#!/usr/bin/env bash
# Every GPU benchmark of the CUDA backend into one folder, on a GPU machine
# after `bash tools/device-deps.sh build` (which builds into build-device).
#
#   bash tools/run-gpu-benchmarks.sh [--part 1|2] OUT_DIR [BUILD_DIR]   # BUILD_DIR: build-device
#
# Two parts, each about 9 minutes of GPU time (run them as two invocations
# into the same OUT_DIR; without --part both run, one after the other).
# Logs and JSON in OUT_DIR:
#
# Part 1, the programs:
#   copy             qllm_bench_copy --json              copy.json, copy.log
#   gemm             qllm_bench_gemm --json              gemm.json, gemm.log
#   model-olmoe      qllm_bench_model --model olmoe-1b-7b     model-olmoe-1b-7b.{json,log}
#   model-mixtral    qllm_bench_model --model mixtral-8x7b    model-mixtral-8x7b.{json,log}
#                    (as many layers as fit; the JSON says how many)
#   dispatch-olmoe   qllm_bench_dispatch --model olmoe-1b-7b  dispatch-olmoe-1b-7b.{json,log}
#   dispatch-mixtral qllm_bench_dispatch --model mixtral-8x7b dispatch-mixtral-8x7b.{json,log}
#                    (host against device dispatcher: cost per unit, preemption latency)
#   hf               profiling/hf_side_by_side.py        hf_side_by_side.json, hf.log
#                    (OLMoE-1B-7B shape with 2 layers, checkpoint written under
#                    $QLLM_BENCH_SCRATCH, default /tmp/qllm-bench-scratch)
#   model-qwen3      qllm_bench_model --model qwen3-30b-a3b (only with QLLM_BENCH_QWEN3=1)
#
# Part 2, the QLLM paper's experiment on the device dispatcher, OLMoE-1B-7B
# shape with synthetic weights (configs/olmoe-1b-7b.yaml, model.synthetic_weights):
#   paper-checkpoint qllm make-model --preset olmoe-1b-7b into $QLLM_BENCH_SCRATCH
#                    (13 GB, written once and kept: qllm opens the checkpoint for
#                    its shape; the weights themselves are made on the GPU)
#   paper-ls-alone   qllm run, the LS stream alone on an idle GPU   paper-ls-alone.{json,log}
#   paper-be-alone   qllm run, the BE stream alone                  paper-be-alone.{json,log}
#   paper-rR         qllm run, 20% LS / 80% BE at R req/s, the three policies one
#                    after the other on one device dispatcher       paper-rR.{json,log}
#                    for R in $QLLM_PAPER_RATES (default "4 8 16 32"): the highest
#                    rate first (with the two alone runs, the goals), then the rest
#                    from the lowest
#   paper-rR-noqueue qllm run at the highest rate, priority-expert, with
#                    scheduler.queue_prefill=false (no pass queued behind a
#                    running one): compare with paper-rR's priority-expert
#   paper-goals      profiling/bench_goals.py: LS p99 TTFT at the highest rate / alone
#                    (goal <= 1.5) and BE throughput / alone (goal >= 0.9), per
#                    policy: goals.json, paper-goals.log
#   paper-plots      profiling/plot_bench.py all (where matplotlib is installed)
# Workloads: configs/workloads/qllm-paper.yaml (Poisson arrivals, 20% LS,
# ShareGPT-like prompts, 50 output tokens) with the rate, the LS fraction
# (1 and 0 for the alone runs, at 0.2 and 0.8 times the highest rate) and
# $QLLM_PAPER_DURATION_S seconds of arrivals (default 12) instead of 1024
# requests, written to OUT_DIR/workloads/. Arrivals are replayed in real
# time: a run takes the start-up, then per policy its duration plus the
# drain.
#
# plus nvidia-smi.txt and summary.txt (each step: ok / failed / timed out /
# skipped, and its seconds; appended to by each part).
#
# A failing step is reported and the rest still run. Each part keeps to a
# budget (QLLM_BENCH_BUDGET_S, default 540 s, for each part): each step runs under
# `timeout` with at most its own cap and what is left of the budget, and a
# step is skipped when less than its minimum is left. Exits 0 when every
# step that ran succeeded, 1 otherwise.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  echo "usage: $0 [--part 1|2] OUT_DIR [BUILD_DIR]   (after: bash tools/device-deps.sh build)" >&2
  exit 2
}
PARTS="1 2"
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage ;;
    --part)
      [[ $# -ge 2 && ("$2" == 1 || "$2" == 2) ]] || usage
      PARTS="$2"
      shift 2
      ;;
    --part=1 | --part=2)
      PARTS="${1#--part=}"
      shift
      ;;
    *)
      ARGS+=("$1")
      shift
      ;;
  esac
done
[[ ${#ARGS[@]} -ge 1 && ${#ARGS[@]} -le 2 ]] || usage
OUT="${ARGS[0]}"
BUILD="${ARGS[1]:-$ROOT/build-device}"
BUDGET="${QLLM_BENCH_BUDGET_S:-540}"  # per part
SCRATCH="${QLLM_BENCH_SCRATCH:-/tmp/qllm-bench-scratch}"
RATES="${QLLM_PAPER_RATES:-4 8 16 32}"
DURATION="${QLLM_PAPER_DURATION_S:-12}"
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
START=$SECONDS  # of the part that runs
T0=$SECONDS
SUMMARY="$OUT/summary.txt"
FAILED=0
{
  echo "qllm GPU benchmarks, part(s) $PARTS, commit $COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ)," \
    "budget ${BUDGET} s per part"
  echo "build: $BUILD"
} >> "$SUMMARY"

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed (see nvidia-smi.txt)" >> "$SUMMARY"

# step NAME CAP_S MIN_S STDOUT CMD...: runs CMD under the budget; STDOUT is a
# file for the command's standard output (its JSON), or - to keep it in the log.
step() {
  local name="$1" cap="$2" min="$3" stdout="$4"
  shift 4
  local left=$((BUDGET - (SECONDS - START) - 10))  # 10 s for timeout's kill grace and the summary
  if ((left < min)); then
    echo "== $name: skipped ($((left > 0 ? left : 0)) s left of the budget, needs $min)"
    printf '%-26s skipped (budget)\n' "$name" >> "$SUMMARY"
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
  printf '%-26s %s, %d s\n' "$name" "$status" "$took" >> "$SUMMARY"
}

# note NAME TEXT: a step that did not run, and why.
note() {
  echo "== $1: $2"
  printf '%-26s %s\n' "$1" "$2" >> "$SUMMARY"
}

P="$BUILD/profiling"

part1() {
  step copy 60 10 "$OUT/copy.json" "$P/qllm_bench_copy" --json
  step gemm 120 20 "$OUT/gemm.json" "$P/qllm_bench_gemm" --json
  step model-olmoe 150 40 - "$P/qllm_bench_model" --model olmoe-1b-7b --commit "$COMMIT" \
    --json "$OUT/model-olmoe-1b-7b.json"
  step model-mixtral 200 60 - "$P/qllm_bench_model" --model mixtral-8x7b --commit "$COMMIT" \
    --json "$OUT/model-mixtral-8x7b.json"
  step dispatch-olmoe 180 60 - "$P/qllm_bench_dispatch" --model olmoe-1b-7b --commit "$COMMIT" \
    --json "$OUT/dispatch-olmoe-1b-7b.json"
  step dispatch-mixtral 150 60 - "$P/qllm_bench_dispatch" --model mixtral-8x7b --commit "$COMMIT" \
    --json "$OUT/dispatch-mixtral-8x7b.json"
  step hf 170 60 - python3 "$ROOT/profiling/hf_side_by_side.py" --out "$OUT" --scratch "$SCRATCH" \
    --bench "$P/qllm_bench_model" --qllm "$BUILD/qllm" --commit "$COMMIT"
  if [[ "${QLLM_BENCH_QWEN3:-0}" == 1 ]]; then
    step model-qwen3 240 120 - "$P/qllm_bench_model" --model qwen3-30b-a3b --commit "$COMMIT" \
      --json "$OUT/model-qwen3-30b-a3b.json"
  fi
}

# The traces folder the base workload would find (ShareGPT lengths), so the
# derived workloads in OUT_DIR draw the same lengths.
traces_dir() {
  local d="$ROOT/configs/workloads"
  while [[ "$d" != / && -n "$d" ]]; do
    if [[ -d "$d/shared/data/traces" ]]; then
      echo "$d/shared/data/traces"
      return
    fi
    d="$(dirname "$d")"
  done
}

# paper_workload NAME RATE LS_FRACTION: configs/workloads/qllm-paper.yaml at
# another rate and LS fraction, bounded by $DURATION s of arrivals.
paper_workload() {
  local name="$1" rate="$2" ls="$3" base="$ROOT/configs/workloads/qllm-paper.yaml"
  local f="$OUT/workloads/$name.yaml"
  mkdir -p "$OUT/workloads" || return 1
  sed -e "s/^name: .*/name: $name/" \
    -e "s/^num_requests: .*/num_requests: 0\nduration_s: $DURATION/" \
    -e "s/^  rate: .*/  rate: $rate/" \
    -e "s/^ls_fraction: .*/ls_fraction: $ls/" "$base" > "$f" || return 1
  for want in "name: $name" "duration_s: $DURATION" "  rate: $rate" "ls_fraction: $ls"; do
    if ! grep -qxF "$want" "$f"; then
      echo "paper_workload: '$want' not set in $f (has $base changed?)" >&2
      return 1
    fi
  done
  echo "$f"
}

part2() {
  local ckpt="$SCRATCH/olmoe-1b-7b-synthetic"
  if [[ -f "$ckpt/config.json" ]]; then
    note paper-checkpoint "kept ($ckpt)"
  else
    rm -rf "$ckpt"
    mkdir -p "$SCRATCH"
    step paper-checkpoint 180 40 - "$BUILD/qllm" make-model --preset olmoe-1b-7b --out "$ckpt" --quiet
  fi
  if [[ ! -f "$ckpt/config.json" ]]; then
    note paper-runs "skipped (no checkpoint at $ckpt)"
    return
  fi
  if [[ -z "${QLLM_TRACES_DIR:-}" ]]; then
    local td
    td="$(traces_dir)"
    [[ -n "$td" ]] && export QLLM_TRACES_DIR="$td"
  fi

  local top=0 r
  for r in $RATES; do
    top=$(awk -v a="$r" -v b="$top" 'BEGIN { print (a + 0 > b + 0) ? a : b }')
  done
  local ls_rate be_rate
  ls_rate=$(awk -v r="$top" 'BEGIN { printf "%g", 0.2 * r }')
  be_rate=$(awk -v r="$top" 'BEGIN { printf "%g", 0.8 * r }')
  # paper_run NAME POLICIES WORKLOAD RATE LS_FRACTION [KEY=VALUE ...]: one qllm
  # run on the device dispatcher, the policies one after the other (each
  # engine attaches to the dispatcher with its policy); each KEY=VALUE is one
  # more --set.
  paper_run() {
    local wl n kv
    local -a extra=()
    for kv in "${@:6}"; do extra+=(--set "$kv"); done
    n=$(tr ',' ' ' <<< "$2" | wc -w)
    wl="$(paper_workload "$3" "$4" "$5")" || {
      note "$1" "failed (workload)"
      FAILED=1
      return
    }
    step "$1" $((n * (DURATION + 60) + 90)) $((n * (DURATION + 10) + 30)) - "$BUILD/qllm" run -w "$wl" \
      -c "$ROOT/configs/olmoe-1b-7b.yaml" --set "model.path=$ckpt" --set model.synthetic_weights=true \
      --set scheduler.dispatcher=device "${extra[@]}" --policies "$2" -o "$OUT/$1.json"
  }
  local all=fcfs-iteration,priority-layer,priority-expert
  paper_run paper-ls-alone priority-expert qllm-paper-ls-alone "$ls_rate" 1
  paper_run paper-be-alone priority-expert qllm-paper-be-alone "$be_rate" 0
  paper_run "paper-r$top" "$all" "qllm-paper-r$top" "$top" 0.2
  local rest
  rest=$(for r in $RATES; do echo "$r"; done | sort -g | awk -v t="$top" '$1 + 0 != t + 0')
  for r in $rest; do
    paper_run "paper-r$r" "$all" "qllm-paper-r$r" "$r" 0.2
  done
  # The highest rate again without passes queued behind running ones: what
  # scheduler.queue_prefill does to LS TTFT (chunked prompts) and BE throughput.
  paper_run "paper-r$top-noqueue" priority-expert "qllm-paper-r$top" "$top" 0.2 scheduler.queue_prefill=false

  if [[ -f "$OUT/paper-ls-alone.json" && -f "$OUT/paper-be-alone.json" && -f "$OUT/paper-r$top.json" ]]; then
    step paper-goals 30 5 - python3 "$ROOT/profiling/bench_goals.py" --ls-alone "$OUT/paper-ls-alone.json" \
      --be-alone "$OUT/paper-be-alone.json" --out "$OUT/goals.json" "$OUT/paper-r$top.json"
  else
    note paper-goals "skipped (the alone runs or the run at $top req/s are missing)"
  fi
  if python3 -c 'import matplotlib, numpy' 2> /dev/null; then
    local runs=() f
    for f in "$OUT"/paper-r*.json; do
      [[ -e "$f" && "$f" != *-noqueue.json ]] && runs+=("$f")
    done
    if ((${#runs[@]} > 0)); then
      step paper-plots 60 10 - python3 "$ROOT/profiling/plot_bench.py" all "${runs[@]}" --out-dir "$OUT/plots"
    else
      note paper-plots "skipped (no mixed run finished)"
    fi
  else
    note paper-plots "skipped (python3 has no matplotlib/numpy; plot later with profiling/plot_bench.py all)"
  fi
}

for part in $PARTS; do
  START=$SECONDS
  echo "part $part:" >> "$SUMMARY"
  case $part in
    1) part1 ;;
    2) part2 ;;
  esac
done

echo "total $((SECONDS - T0)) s" >> "$SUMMARY"
echo
cat "$SUMMARY"
exit "$FAILED"
