#!/usr/bin/env python3
"""Tests of profiling/bench_goals.py on hand-written run summaries.

Run with `python3 -m pytest profiling/test_bench_goals.py` or
`python3 profiling/test_bench_goals.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_goals  # noqa: E402


def run_json(policy: str, rate: float, ls_fraction: float, ls_p99, be_tput, ls_n: int = 40) -> dict:
    return {
        "format": "qllm-run/1",
        "label": policy,
        "spec": {"arrivals": {"process": "poisson", "rate": rate}, "ls_fraction": ls_fraction,
                 "lengths": {"output": 50}},
        "summary": {"duration_s": 12.0,
                    "LS": {"ttft_s": {"count": ls_n, "p99": ls_p99}},
                    "BE": {"output_throughput": be_tput}},
        "extra": {"policy": policy},
    }


def write(d: Path, name: str, j: dict) -> str:
    p = d / name
    p.write_text(json.dumps(j))
    return str(p)


def test_ratios_and_goals():
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        ls = write(d, "ls.json", run_json("priority-expert", 6.4, 1.0, 0.100, None))
        be = write(d, "be.json", run_json("priority-expert", 25.6, 0.0, None, 1000.0))  # offered 1280: saturated
        fcfs = write(d, "fcfs.json", run_json("fcfs-iteration", 32, 0.2, 0.400, 950.0))
        prio = write(d, "prio.json", run_json("priority-expert", 32, 0.2, 0.120, 880.0))
        res = bench_goals.evaluate(bench_goals.one_run(ls, "LS"), bench_goals.one_run(be, "BE"),
                                   bench_goals.load_runs(fcfs) + bench_goals.load_runs(prio))
        assert res["be_alone"]["saturated"] is True
        assert res["warnings"] == []
        f, p = res["mixed"]
        assert f["policy"] == "fcfs-iteration" and abs(f["ls_p99_ratio"] - 4.0) < 1e-9 and not f["ls_goal_met"]
        assert abs(f["be_throughput_ratio"] - 0.95) < 1e-9 and f["be_goal_met"]
        assert abs(p["ls_p99_ratio"] - 1.2) < 1e-9 and p["ls_goal_met"]
        assert abs(p["be_throughput_ratio"] - 0.88) < 1e-9 and not p["be_goal_met"]


def test_mismatched_streams_warn_and_cli_writes_json():
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        ls = write(d, "ls.json", run_json("priority-expert", 2.0, 1.0, 0.100, None))
        be = write(d, "be.json", run_json("priority-expert", 25.6, 0.0, None, 1280.0))
        mixed = write(d, "m.json", {"format": "qllm-runs/1",
                                    "runs": [run_json("priority-layer", 32, 0.2, 0.110, 1200.0)]})
        out = d / "goals.json"
        r = subprocess.run([sys.executable, str(HERE / "bench_goals.py"), "--ls-alone", ls, "--be-alone", be,
                            "--out", str(out), mixed], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "warning:" in r.stdout and "LS stream" in r.stdout
        assert "saturated: no" in r.stdout
        j = json.loads(out.read_text())
        assert j["mixed"][0]["policy"] == "priority-layer" and j["mixed"][0]["ls_goal_met"]


def test_unusable_input_exits_2():
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        be = write(d, "be.json", run_json("priority-expert", 25.6, 0.0, None, 1280.0))
        r = subprocess.run([sys.executable, str(HERE / "bench_goals.py"), "--ls-alone", be, "--be-alone", be, be],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "no LS TTFT p99" in r.stderr
        r = subprocess.run([sys.executable, str(HERE / "bench_goals.py"), "--ls-alone", str(d / "none.json"),
                            "--be-alone", be, be], capture_output=True, text=True)
        assert r.returncode == 2 and "no such file" in r.stderr


if __name__ == "__main__":
    for name, f in list(globals().items()):
        if name.startswith("test_") and callable(f):
            f()
            print(f"{name}: ok")
