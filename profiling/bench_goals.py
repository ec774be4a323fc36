#!/usr/bin/env python3
"""The device dispatcher's two goals from `qllm run` files of the paper's
experiment (tools/run-gpu-benchmarks.sh --part 2 writes them):

  LS isolation   LS p99 TTFT of a mixed run (20% LS / 80% BE at the highest
                 rate) / LS p99 TTFT of the LS stream alone on an idle GPU;
                 goal <= 1.5
  BE throughput  BE output tokens/s of the mixed run / BE output tokens/s of
                 the BE stream alone; goal >= 0.9

  python3 profiling/bench_goals.py --ls-alone LS.json --be-alone BE.json [--out goals.json] MIXED.json...

Every figure comes from the runs' summaries (engine/workload/report.cpp:
summary.LS.ttft_s.p99, summary.BE.output_throughput, the output tokens of
completed requests over first arrival to last finish). A mixed run is one
policy (extra.policy) at one rate (spec arrivals.rate). The alone runs should
carry the mixed runs' LS and BE streams: rates of rate x ls_fraction and
rate x (1 - ls_fraction); a mismatch is printed as a warning. Whether BE was
saturated is judged from the BE-alone run: output tokens/s against the
offered rate x output length (below 90%: saturated); without saturation the
throughput ratio says little (both runs keep up with their arrivals).

Prints a table and whether each goal was met, never fails on a missed goal;
with it the BE preemptions of each mixed run (none under fcfs-iteration: a
check that the policy was the one named).
Exit status 2 on unusable input (a missing file or field), 0 otherwise. Needs
only the Python standard library.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Optional

PROG = "bench_goals.py"
LS_GOAL = 1.5   # LS p99 TTFT, mixed / alone: at most
BE_GOAL = 0.9   # BE output throughput, mixed / alone: at least
SATURATED = 0.9  # BE alone keeps below this fraction of its offered output rate: saturated


class InputError(Exception):
    pass


def _num(v: Any) -> Optional[float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def load_runs(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}")
    if not isinstance(j, dict):
        raise InputError(f"{path}: not a qllm run file")
    runs = j.get("runs") if "runs" in j else [j]
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise InputError(f"{path}: no runs")
    for i, r in enumerate(runs):
        r["_source"] = path if len(runs) == 1 else f"{path}: runs[{i}]"
        if not isinstance(r.get("summary"), dict):
            raise InputError(f"{r['_source']}: field 'summary' is missing")
    return runs


def policy(run: dict) -> str:
    extra = run.get("extra") if isinstance(run.get("extra"), dict) else {}
    p = extra.get("policy")
    return p if isinstance(p, str) and p else str(run.get("label", "?"))


def spec_rate(run: dict) -> Optional[float]:
    arr = (run.get("spec") or {}).get("arrivals") or {}
    return _num(arr.get("rate")) if arr.get("process") in ("poisson", "gamma") else None


def ls_fraction(run: dict) -> Optional[float]:
    return _num((run.get("spec") or {}).get("ls_fraction"))


def fixed_output(run: dict) -> Optional[float]:
    return _num(((run.get("spec") or {}).get("lengths") or {}).get("output"))


def ls_p99(run: dict) -> tuple[Optional[float], int]:
    t = ((run["summary"].get("LS") or {}).get("ttft_s")) or {}
    n = t.get("count")
    return _num(t.get("p99")), n if isinstance(n, int) else 0


def be_tput(run: dict) -> Optional[float]:
    return _num((run["summary"].get("BE") or {}).get("output_throughput"))


def be_preemptions(run: dict) -> Optional[int]:
    v = (run["summary"].get("BE") or {}).get("preemptions")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def one_run(path: str, what: str) -> dict:
    runs = load_runs(path)
    if len(runs) > 1:
        sys.stderr.write(f"{PROG}: note: {path} has {len(runs)} runs; the {what} run is the first\n")
    return runs[0]


def close(a: Optional[float], b: Optional[float]) -> bool:
    return a is not None and b is not None and abs(a - b) <= 0.01 * max(abs(a), abs(b), 1e-9)


def evaluate(ls_alone: dict, be_alone: dict, mixed: list[dict]) -> dict:
    ls_ref, ls_n = ls_p99(ls_alone)
    be_ref = be_tput(be_alone)
    if ls_ref is None or ls_ref <= 0:
        raise InputError(f"{ls_alone['_source']}: no LS TTFT p99 (did any LS request complete?)")
    if be_ref is None or be_ref <= 0:
        raise InputError(f"{be_alone['_source']}: no BE output throughput (did any BE request complete?)")
    warnings = []
    be_rate, out = spec_rate(be_alone), fixed_output(be_alone)
    offered = be_rate * out if be_rate is not None and out is not None else None
    saturated = None if offered is None else be_ref < SATURATED * offered
    rows = []
    for m in mixed:
        rate, frac = spec_rate(m), ls_fraction(m)
        if rate is not None and frac is not None:
            if not close(spec_rate(ls_alone), rate * frac):
                warnings.append(f"{m['_source']}: its LS stream is {rate:g} x {frac:g} req/s, the LS-alone run "
                                f"has {spec_rate(ls_alone)} req/s")
            if not close(be_rate, rate * (1 - frac)):
                warnings.append(f"{m['_source']}: its BE stream is {rate:g} x {1 - frac:g} req/s, the BE-alone "
                                f"run has {be_rate} req/s")
        p99, n = ls_p99(m)
        tput = be_tput(m)
        ls_ratio = p99 / ls_ref if p99 is not None else None
        be_ratio = tput / be_ref if tput is not None else None
        rows.append({
            "policy": policy(m),
            "source": m["_source"],
            "rate": rate,
            "ls_fraction": frac,
            "ls_p99_ttft_s": p99,
            "ls_completed": n,
            "ls_p99_ratio": ls_ratio,
            "ls_goal_met": ls_ratio is not None and ls_ratio <= LS_GOAL,
            "be_output_throughput": tput,
            "be_throughput_ratio": be_ratio,
            "be_goal_met": be_ratio is not None and be_ratio >= BE_GOAL,
            "be_preemptions": be_preemptions(m),
        })
    return {
        "goals": {"ls_p99_ttft_ratio_at_most": LS_GOAL, "be_throughput_ratio_at_least": BE_GOAL},
        "ls_alone": {"source": ls_alone["_source"], "rate": spec_rate(ls_alone), "ls_p99_ttft_s": ls_ref,
                     "ls_completed": ls_n},
        "be_alone": {"source": be_alone["_source"], "rate": be_rate, "be_output_throughput": be_ref,
                     "offered_output_throughput": offered, "saturated": saturated},
        "mixed": rows,
        "warnings": warnings,
    }


def _fmt(v: Optional[float], f: str) -> str:
    return "-" if v is None else format(v, f)


def print_table(res: dict) -> None:
    la, ba = res["ls_alone"], res["be_alone"]
    print(f"LS alone (idle GPU): {_fmt(la['rate'], 'g')} req/s, LS p99 TTFT {la['ls_p99_ttft_s'] * 1e3:.1f} ms "
          f"({la['ls_completed']} requests)")
    sat = {None: "unknown", True: "yes", False: "no"}[ba["saturated"]]
    print(f"BE alone: {_fmt(ba['rate'], 'g')} req/s, BE {ba['be_output_throughput']:.0f} output tok/s of "
          f"{_fmt(ba['offered_output_throughput'], '.0f')} offered (saturated: {sat})")
    print(f"{'policy':<16} {'rate':>6} {'LS p99 ms':>10} {'n':>5} {'/ alone':>8} {'<= ' + str(LS_GOAL):>7} "
          f"{'BE tok/s':>9} {'/ alone':>8} {'>= ' + str(BE_GOAL):>7} {'BE preempted':>12}")
    for r in res["mixed"]:
        print(f"{r['policy']:<16} {_fmt(r['rate'], 'g'):>6} "
              f"{_fmt(None if r['ls_p99_ttft_s'] is None else r['ls_p99_ttft_s'] * 1e3, '.1f'):>10} "
              f"{r['ls_completed']:>5} {_fmt(r['ls_p99_ratio'], '.2f'):>8} "
              f"{'met' if r['ls_goal_met'] else 'NOT met':>7} "
              f"{_fmt(r['be_output_throughput'], '.0f'):>9} {_fmt(r['be_throughput_ratio'], '.2f'):>8} "
              f"{'met' if r['be_goal_met'] else 'NOT met':>7} "
              f"{'-' if r['be_preemptions'] is None else r['be_preemptions']:>12}")
    if ba["saturated"] is False:
        print("note: BE alone kept up with its arrivals (not saturated): raise the rate for a "
              "meaningful throughput ratio")
    for w in res["warnings"]:
        print(f"warning: {w}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description="LS isolation and BE throughput goals from qllm run files")
    ap.add_argument("--ls-alone", required=True, metavar="FILE", help="run of the LS stream alone (idle GPU)")
    ap.add_argument("--be-alone", required=True, metavar="FILE", help="run of the BE stream alone")
    ap.add_argument("--out", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("mixed", nargs="+", metavar="MIXED.json", help="mixed runs (one policy each, or several)")
    a = ap.parse_args(argv)
    try:
        mixed = [r for p in a.mixed for r in load_runs(p)]
        res = evaluate(one_run(a.ls_alone, "LS-alone"), one_run(a.be_alone, "BE-alone"), mixed)
    except InputError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    print_table(res)
    if a.out:
        try:
            with open(a.out, "w", encoding="utf-8") as f:
                json.dump(res, f, indent=2)
                f.write("\n")
        except OSError as e:
            sys.stderr.write(f"{PROG}: error: {a.out}: cannot write: {e}\n")
            return 1
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
