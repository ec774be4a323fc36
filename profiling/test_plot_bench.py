#!/usr/bin/env python3
"""Tests of profiling/plot_bench.py on synthetic run files.

Run with `python3 -m pytest profiling/test_plot_bench.py` or
`python3 profiling/test_plot_bench.py`. Set PLOT_BENCH_KEEP=DIR to keep the
generated JSON and PNGs in DIR (to look at them) instead of a temp folder.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "plot_bench.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POLICIES = ("fcfs-iteration", "priority-layer", "priority-expert")
LS_TTFT_SLO = 0.004

# --------------------------------------------------------------------------
# A toy engine: one LS slot (0) and one BE slot (1), 2 layers, 2 of 4 experts
# per layer; units run one at a time. BE keeps 4 requests running; LS arrives
# as a Poisson stream. fcfs-iteration switches slots only between passes,
# priority-layer also before attn/head units, priority-expert before any unit.

LAYERS, EXPERTS_PER_LAYER = 2, 2
UNIT_S = {"attn": 0.00030, "expert": 0.00020, "head": 0.00015}


def pass_units():
    for layer in range(LAYERS):
        yield ("attn", layer, 0)
        for e in range(EXPERTS_PER_LAYER):
            yield ("expert", layer, e)
    yield ("head", LAYERS - 1, 0)


def simulate(policy: str, rate: float, duration: float, seed: int) -> dict:
    rng = random.Random(seed)
    arrivals, t = [], rng.expovariate(rate)
    while t < duration:
        arrivals.append(t)
        t += rng.expovariate(rate)
    records = {}
    next_id = 0

    def new(cls, at, out):
        nonlocal next_id
        r = {"id": next_id, "cls": cls, "arrival_s": at, "first_scheduled_s": None,
             "first_token_s": None, "token_times_s": [], "finish_s": None,
             "prompt_tokens": rng.randint(16, 128), "output_tokens": out, "preemptions": 0,
             "finished_ok": False, "error": ""}
        records[next_id] = r
        next_id += 1
        return r

    be_running = [new("BE", 0.0, rng.randint(6, 14)) for _ in range(4)]
    ls_waiting, ls_pending = [], list(arrivals)
    units = []
    now = 0.0
    slot_pass = {0: None, 1: None}  # slot -> [requests, unit iterator, next unit, started]

    def form(slot):
        if slot == 0:
            while ls_pending and ls_pending[0] <= now:
                ls_waiting.append(new("LS", ls_pending.pop(0), 4))
            if not ls_waiting:
                return None
            batch = list(ls_waiting)
        else:
            if now >= duration:
                return None
            batch = list(be_running)
        it = pass_units()
        for r in batch:
            if r["first_scheduled_s"] is None:
                r["first_scheduled_s"] = now
        return [batch, it, next(it), False]

    while True:
        for s in (0, 1):
            if slot_pass[s] is None:
                slot_pass[s] = form(s)
        if slot_pass[0] is None and slot_pass[1] is None:
            break  # BE stops issuing at `duration`; every LS arrival came before it
        ls, be = slot_pass[0], slot_pass[1]
        if ls is None:
            pick = 1
        elif be is None or not be[3]:
            pick = 0
        else:
            kind = be[2][0]
            can = {"fcfs-iteration": False, "priority-layer": kind in ("attn", "head"),
                   "priority-expert": True}[policy]
            pick = 0 if can else 1
        if pick == 0 and not ls[3] and be is not None and be[3]:  # BE pass paused
            for r in be[0]:
                r["preemptions"] += 1
        p = slot_pass[pick]
        kind, layer, expert = p[2]
        dur = UNIT_S[kind] * (1.0 + 0.15 * len(p[0])) * rng.uniform(0.8, 1.2)
        units.append({"slot": pick, "class": "LS" if pick == 0 else "BE", "kind": kind,
                      "layer": layer, "expert": expert, "start_s": now, "end_s": now + dur})
        now += dur
        p[3] = True
        nxt = next(p[1], None)
        if nxt is not None:
            p[2] = nxt
            continue
        for r in p[0]:  # pass done: a token for each request
            r["token_times_s"].append(now)
            if r["first_token_s"] is None:
                r["first_token_s"] = now
            if len(r["token_times_s"]) >= r["output_tokens"]:
                r["finish_s"], r["finished_ok"] = now, True
                if pick == 0:
                    ls_waiting.remove(r)
                else:
                    be_running.remove(r)
                    if now < duration:
                        be_running.append(new("BE", now, rng.randint(6, 14)))
        slot_pass[pick] = None
    recs = sorted(records.values(), key=lambda r: r["id"])
    return {"format": "qllm-run/1", "label": policy, "spec": spec(rate, duration),
            "summary": summarize(recs, duration), "records": recs,
            "extra": {"policy": policy, "dispatcher": "toy", "units": units}}


def spec(rate: float, duration: float) -> dict:
    return {"name": "toy", "seed": 1, "num_requests": 0, "duration_s": duration,
            "arrivals": {"process": "poisson", "rate": rate, "burstiness": 1.0},
            "be_concurrency": 4,
            "ls": {"ttft_s": LS_TTFT_SLO, "tpot_s": 0.0, "e2e_s": 0.0, "prompt": None,
                   "output": 4},
            "be": {"ttft_s": 0.0, "tpot_s": 0.0, "e2e_s": 0.0, "prompt": None, "output": None},
            "source": "toy.yaml"}


def summarize(recs: list, duration: float) -> dict:
    def stats(xs):
        xs = sorted(xs)
        if not xs:
            return {"count": 0, "mean": None, "median": None, "p90": None, "p99": None,
                    "min": None, "max": None}

        def pct(p):
            pos = p / 100 * (len(xs) - 1)
            lo = int(pos)
            hi = min(lo + 1, len(xs) - 1)
            return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
        return {"count": len(xs), "mean": sum(xs) / len(xs), "median": pct(50), "p90": pct(90),
                "p99": pct(99), "min": xs[0], "max": xs[-1]}

    out = {"duration_s": duration}
    for cls in ("LS", "BE"):
        done = [r for r in recs if r["cls"] == cls and r["finished_ok"]]
        toks = sum(r["output_tokens"] for r in done)
        out[cls] = {"requests": sum(1 for r in recs if r["cls"] == cls), "completed": len(done),
                    "output_tokens": toks, "output_throughput": toks / duration,
                    "ttft_s": stats([r["first_token_s"] - r["arrival_s"] for r in done]),
                    "slo": {"ttft_s": LS_TTFT_SLO if cls == "LS" else 0.0, "tpot_s": 0.0,
                            "e2e_s": 0.0}}
    out["all"] = {"requests": len(recs)}
    return out


# --------------------------------------------------------------------------
# Fixtures


_DIR: Path | None = None


def data_dir() -> Path:
    """Writes the synthetic inputs once: a qllm-runs/1 file with the three
    policies at 60 req/s (with unit logs) and qllm-run/1 files at 30 and 120."""
    global _DIR
    if _DIR is not None:
        return _DIR
    keep = os.environ.get("PLOT_BENCH_KEEP")
    if keep:
        _DIR = Path(keep)
        _DIR.mkdir(parents=True, exist_ok=True)
    else:
        _DIR = Path(tempfile.mkdtemp(prefix="plot_bench_test_"))
        atexit.register(shutil.rmtree, _DIR, True)
    runs = [simulate(p, 60.0, 0.5, seed=7) for p in POLICIES]
    (_DIR / "runs.json").write_text(json.dumps({"format": "qllm-runs/1", "runs": runs}))
    for rate in (30.0, 120.0):
        for i, p in enumerate(POLICIES):
            run = simulate(p, rate, 0.5, seed=11 + i)
            run["extra"] = {"policy": p, "request_rate": rate, "dispatcher": "toy"}
            (_DIR / f"bench_{p}_{int(rate)}.json").write_text(json.dumps(run))
    return _DIR


def plot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 300, (width, height)


def assert_ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr


def assert_input_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    assert "error:" in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in {r.stderr!r}"


# --------------------------------------------------------------------------
# Tests


def test_cdf():
    d = data_dir()
    out = d / "ttft_cdf.png"
    assert_ok(plot("cdf", str(d / "runs.json"), "-o", str(out)))
    assert_png(out)
    out = d / "ttft_cdf_logx.png"
    assert_ok(plot("cdf", str(d / "runs.json"), "--logx", "-o", str(out)))
    assert_png(out)


def test_rate():
    d = data_dir()
    out = d / "latency_vs_rate.png"
    files = [str(d / "runs.json")] + sorted(str(p) for p in d.glob("bench_*.json"))
    assert_ok(plot("rate", *files, "-o", str(out)))
    assert_png(out)


def test_timeline():
    d = data_dir()
    out = d / "timeline.png"
    r = plot("timeline", str(d / "runs.json"), "--run", "priority-expert", "--start", "0.05",
             "--end", "0.065", "-o", str(out))
    assert_ok(r)
    assert_png(out)
    out = d / "timeline_default.png"
    r = plot("timeline", str(d / "runs.json"), "-o", str(out))  # first run, auto window
    assert_ok(r)
    assert_png(out)
    assert "fcfs-iteration" in r.stderr  # says which run it drew


def test_all():
    d = data_dir()
    out = d / "all"
    files = [str(d / "runs.json")] + sorted(str(p) for p in d.glob("bench_*.json"))
    r = plot("all", *files, "--out-dir", str(out))
    assert_ok(r)
    assert_png(out / "ttft_cdf.png")
    assert_png(out / "latency_vs_rate.png")
    for p in POLICIES:
        assert_png(out / f"timeline_{p}_60_req_s.png")


def test_summary_only_run():
    """A file without records (as committed in profiling/results) still gives a CDF."""
    d = data_dir()
    j = json.loads((d / "runs.json").read_text())
    for run in j["runs"]:
        del run["records"]
        run["extra"]["units"] = 1234  # `qllm run` today: a count, not a log
    path = d / "summary_only.json"
    path.write_text(json.dumps(j))
    out = d / "summary_only_cdf.png"
    assert_ok(plot("cdf", str(path), "-o", str(out)))
    assert_png(out)
    assert_input_error(plot("timeline", str(path), "-o", str(d / "x.png")),
                       "no per-unit log", "count")
    r = plot("all", str(path), "--out-dir", str(d / "summary_only_all"))
    assert_ok(r)
    assert "timeline skipped" in r.stderr
    assert_png(d / "summary_only_all" / "ttft_cdf.png")


def test_malformed_input():
    d = data_dir()
    bad = d / "bad"
    bad.mkdir(exist_ok=True)
    good = json.loads((d / "runs.json").read_text())

    def write(name, obj):
        p = bad / name
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return str(p)

    out = str(bad / "out.png")
    assert_input_error(plot("cdf", write("trunc.json", '{"format": "qllm-runs/1", "runs": ['),
                            "-o", out), "trunc.json", "invalid JSON")
    assert_input_error(plot("cdf", write("fmt.json", {"format": "other/9", "runs": []}), "-o", out),
                       "unknown format")
    assert_input_error(plot("cdf", write("list.json", [1, 2]), "-o", out), "not a qllm run file")
    assert_input_error(plot("cdf", str(bad / "missing.json"), "-o", out), "no such file")

    j = json.loads(json.dumps(good))
    j["runs"][1]["records"][3]["cls"] = "XX"
    assert_input_error(plot("cdf", write("cls.json", j), "-o", out), "runs[1]: records[3]", "cls")

    j = json.loads(json.dumps(good))
    del j["runs"][0]["records"][0]["arrival_s"]
    assert_input_error(plot("rate", write("field.json", j), "-o", out), "arrival_s", "missing")

    j = json.loads(json.dumps(good))
    j["runs"][0]["records"][2]["first_token_s"] = "soon"
    assert_input_error(plot("cdf", write("time.json", j), "-o", out), "first_token_s")

    j = json.loads(json.dumps(good))
    j["runs"][2]["extra"]["units"][5] = {"slot": 0, "kind": "attn", "start_s": 2.0, "end_s": 1.0}
    assert_input_error(plot("timeline", write("unit.json", j), "--run", "priority-expert",
                            "-o", out), "extra.units[5]", "before start_s")

    j = json.loads(json.dumps(good))
    for run in j["runs"]:
        del run["extra"]["units"]
    assert_input_error(plot("timeline", write("nounits.json", j), "-o", out), "no per-unit log")

    assert_input_error(plot("timeline", str(d / "runs.json"), "--run", "nope", "-o", out),
                       "no run labelled 'nope'", "priority-layer")
    assert_input_error(plot("timeline", str(d / "runs.json"), "--start", "0.3", "--end", "0.2",
                            "-o", out), "--end")
    # argparse's own usage errors are status 2 as well
    r = plot("cdf", "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not Path(out).exists()


def test_repository_results():
    """The committed CPU measurement (summaries, no records, no unit log)."""
    root = HERE.parent
    paths = [p for p in (root / "profiling/results/cpu-tiny-contended.json",
                         root / "qllm-run.json") if p.is_file()]
    if not paths:
        return
    out = data_dir() / "repo"
    for p in paths:
        r = plot("all", str(p), "--out-dir", str(out / p.stem))
        assert_ok(r)
        assert_png(out / p.stem / "ttft_cdf.png")


def main() -> int:
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, f in tests:
        try:
            f()
            print(f"ok   {name}")
        except Exception as e:  # report every test, then fail
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
