#!/usr/bin/env python3
"""Plots of qllm run files.

Reads the JSON that `qllm run` writes ("qllm-runs/1": one run per policy) and
that `qllm bench` writes ("qllm-run/1": one run per invocation), and draws:

  cdf       TTFT CDF, one line per (run, class); LS solid, BE dashed; the
            workload's TTFT SLOs as vertical lines.
  rate      LS TTFT (mean, p99) and BE output throughput against request
            rate, one line per policy.
  timeline  per-unit timeline of one run: a track per slot, units coloured by
            kind (attn / expert / head), LS arrivals as markers, paused passes
            (preemptions) shaded. Needs the unit log in extra.units.
  all       every plot that applies, into --out-dir.

Field names follow engine/workload/report.cpp (records, summary) and
engine/workload/workload_spec.cpp (spec). Bad input exits with status 2 and a
one-line message naming the file and the field; a file that cannot be
written exits with status 1.

Needs Python 3 with matplotlib and numpy (pip install matplotlib numpy).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

PROG = "plot_bench.py"

try:
    import numpy as np
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.stderr.write(f"{PROG}: error: needs matplotlib and numpy ({e}); "
                     "install them with: pip install matplotlib numpy\n")
    sys.exit(2)

DPI = 150
CLASSES = ("LS", "BE")
CLASS_STYLE = {"LS": "-", "BE": "--"}
KIND_COLOURS = {"attn": "#4C72B0", "expert": "#DD8452", "head": "#55A868"}
OTHER_KIND_COLOUR = "#8C8C8C"
PAUSE_COLOUR = "#C44E52"
# Drawn when a run has no records: its summary's TTFT percentiles.
SUMMARY_POINTS = (("min", 0.0), ("median", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))


class InputError(Exception):
    """Bad input or arguments: reported as one line, exit status 2."""


class OutputError(Exception):
    """A plot could not be written: reported as one line, exit status 1."""


# --------------------------------------------------------------------------
# Reading run files


@dataclass
class Record:
    id: int
    cls: str
    arrival_s: Optional[float]
    first_token_s: Optional[float]
    finish_s: Optional[float]
    output_tokens: int
    preemptions: int
    finished_ok: bool

    @property
    def ttft_s(self) -> Optional[float]:
        if not self.finished_ok or self.arrival_s is None or self.first_token_s is None:
            return None
        return self.first_token_s - self.arrival_s


@dataclass
class Unit:
    slot: int
    cls: str
    kind: str
    layer: Optional[int]
    expert: Optional[int]
    start_s: float
    end_s: float


@dataclass
class Run:
    label: str
    source: str  # "file" or "file: runs[i]", for messages
    file_stem: str
    spec: dict
    summary: dict
    extra: dict
    records: Optional[list[Record]]  # None: the file has no records
    display: str = ""  # unique label across all inputs, set by load_all
    _units: Any = field(default=None, repr=False)

    @property
    def policy(self) -> str:
        p = self.extra.get("policy")
        return p if isinstance(p, str) and p else self.label

    def units(self) -> list[Unit]:
        """The unit log; InputError with a clear message when there is none."""
        raw = self.extra.get("units")
        if raw is None:
            raise InputError(
                f"{self.source}: run '{self.label}' has no per-unit log (extra.units is absent); "
                "the timeline needs a run written with the unit log")
        if not isinstance(raw, list):
            raise InputError(
                f"{self.source}: run '{self.label}' has no per-unit log: extra.units is "
                f"{json.dumps(raw)[:40]} (a count, not a list of units); the timeline needs a run "
                "written with the unit log")
        if self._units is None:
            self._units = [_unit(u, f"{self.source}: extra.units[{i}]") for i, u in enumerate(raw)]
        return self._units

    def has_units(self) -> bool:
        return isinstance(self.extra.get("units"), list)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _get(obj: dict, key: str, where: str) -> Any:
    if key not in obj:
        raise InputError(f"{where}: field '{key}' is missing")
    return obj[key]


def _time(obj: dict, key: str, where: str) -> Optional[float]:
    v = _get(obj, key, where)
    if v is None:
        return None
    if not _is_num(v):
        raise InputError(f"{where}: field '{key}' must be a number or null, got {json.dumps(v)[:40]}")
    return float(v)


def _int(obj: dict, key: str, where: str) -> int:
    v = _get(obj, key, where)
    if not _is_int(v):
        raise InputError(f"{where}: field '{key}' must be an integer, got {json.dumps(v)[:40]}")
    return v


def _record(j: Any, where: str) -> Record:
    if not isinstance(j, dict):
        raise InputError(f"{where}: a record must be a JSON object")
    key = "cls" if "cls" in j else "class"  # report.cpp writes "cls"
    cls = _get(j, key, where)
    if cls not in CLASSES:
        raise InputError(f"{where}: field '{key}' must be \"LS\" or \"BE\", got {json.dumps(cls)[:40]}")
    ok = _get(j, "finished_ok", where)
    if not isinstance(ok, bool):
        raise InputError(f"{where}: field 'finished_ok' must be true or false")
    times = _get(j, "token_times_s", where)
    if not isinstance(times, list) or not all(t is None or _is_num(t) for t in times):
        raise InputError(f"{where}: field 'token_times_s' must be an array of numbers or nulls")
    _time(j, "first_scheduled_s", where)
    return Record(id=_int(j, "id", where), cls=cls, arrival_s=_time(j, "arrival_s", where),
                  first_token_s=_time(j, "first_token_s", where),
                  finish_s=_time(j, "finish_s", where),
                  output_tokens=_int(j, "output_tokens", where),
                  preemptions=_int(j, "preemptions", where), finished_ok=ok)


def _unit(j: Any, where: str) -> Unit:
    if not isinstance(j, dict):
        raise InputError(f"{where}: a unit must be a JSON object")
    slot = _int(j, "slot", where)
    kind = _get(j, "kind", where)
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{where}: field 'kind' must be a string (attn, expert, head)")
    cls = j.get("class", j.get("cls", ""))
    if not isinstance(cls, str):
        raise InputError(f"{where}: field 'class' must be \"LS\" or \"BE\"")
    start, end = _time(j, "start_s", where), _time(j, "end_s", where)
    if start is None or end is None:
        raise InputError(f"{where}: fields 'start_s' and 'end_s' must be numbers")
    if end < start:
        raise InputError(f"{where}: end_s ({end}) is before start_s ({start})")
    opt = {}
    for k in ("layer", "expert"):
        v = j.get(k)
        if v is not None and not _is_int(v):
            raise InputError(f"{where}: field '{k}' must be an integer")
        opt[k] = v
    return Unit(slot=slot, cls=cls, kind=kind, start_s=start, end_s=end, **opt)


def _run(j: Any, source: str, file_stem: str, index: int) -> Run:
    if not isinstance(j, dict):
        raise InputError(f"{source}: a run must be a JSON object")
    for key in ("spec", "summary", "extra"):
        if key in j and j[key] is not None and not isinstance(j[key], dict):
            raise InputError(f"{source}: field '{key}' must be an object")
    extra = j.get("extra") or {}
    label = j.get("label")
    if not isinstance(label, str) or not label:
        p = extra.get("policy")
        label = p if isinstance(p, str) and p else f"{file_stem}#{index}"
    records = None
    if "records" in j:
        recs = j["records"]
        if not isinstance(recs, list):
            raise InputError(f"{source}: field 'records' must be an array")
        records = [_record(r, f"{source}: records[{i}]") for i, r in enumerate(recs)]
    return Run(label=label, source=source, file_stem=file_stem, spec=j.get("spec") or {},
               summary=j.get("summary") or {}, extra=extra, records=records)


def load_file(path: str) -> list[Run]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}")
    try:
        j = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON: {e}")
    if not isinstance(j, dict):
        raise InputError(f"{path}: not a qllm run file (the top level must be a JSON object)")
    fmt = j.get("format")
    if fmt is None:
        fmt = "qllm-runs/1" if "runs" in j else "qllm-run/1" if "records" in j or "summary" in j else None
        if fmt is None:
            raise InputError(f"{path}: not a qllm run file (no \"format\", \"runs\" or \"records\")")
    if fmt == "qllm-runs/1":
        runs = j.get("runs")
        if not isinstance(runs, list):
            raise InputError(f"{path}: field 'runs' must be an array of runs")
        if not runs:
            raise InputError(f"{path}: 'runs' is empty")
        return [_run(r, f"{path}: runs[{i}]", p.stem, i) for i, r in enumerate(runs)]
    if fmt == "qllm-run/1":
        return [_run(j, path, p.stem, 0)]
    raise InputError(f"{path}: unknown format {json.dumps(fmt)[:40]} "
                     "(expected \"qllm-runs/1\" or \"qllm-run/1\")")


def load_all(paths: list[str]) -> list[Run]:
    runs = [r for p in paths for r in load_file(p)]
    # Unique legend labels: the run label, then the rate, then the file.
    def dupes(f: Callable[[Run], str]) -> set[str]:
        seen: dict[str, int] = {}
        for r in runs:
            seen[f(r)] = seen.get(f(r), 0) + 1
        return {k for k, n in seen.items() if n > 1}

    for r in runs:
        r.display = r.label
    for extend in (lambda r: _rate_suffix(r), lambda r: f" ({r.file_stem})"):
        d = dupes(lambda r: r.display)
        for r in runs:
            if r.display in d:
                r.display += extend(r)
    d = dupes(lambda r: r.display)
    counts: dict[str, int] = {}
    for r in runs:
        if r.display in d:
            counts[r.display] = counts.get(r.display, 0) + 1
            r.display += f" #{counts[r.display]}"
    return runs


def _rate_suffix(r: Run) -> str:
    rate, _ = request_rate(r)
    return f" @ {rate:g} req/s" if rate is not None else ""


# --------------------------------------------------------------------------
# Quantities


def ttfts(run: Run, cls: str) -> Optional[np.ndarray]:
    """TTFT samples (s) of completed requests of a class, as metrics.cpp counts them."""
    if run.records is None:
        return None
    return np.array([t for r in run.records if r.cls == cls and (t := r.ttft_s) is not None])


def class_summary(run: Run, cls: str) -> dict:
    c = run.summary.get(cls)
    return c if isinstance(c, dict) else {}


def summary_stat(run: Run, cls: str, quantity: str, stat: str) -> Optional[float]:
    q = class_summary(run, cls).get(quantity)
    v = q.get(stat) if isinstance(q, dict) else None
    return float(v) if _is_num(v) else None


def class_requests(run: Run, cls: str) -> int:
    if run.records is not None:
        return sum(1 for r in run.records if r.cls == cls)
    n = class_summary(run, cls).get("requests")
    return n if _is_int(n) else 0


def ttft_slo(runs: list[Run], cls: str) -> list[float]:
    """Distinct TTFT SLOs (s) of a class: spec ls.ttft_s / be.ttft_s, else the summary's."""
    out = set()
    for r in runs:
        sec = r.spec.get(cls.lower())
        v = sec.get("ttft_s") if isinstance(sec, dict) else None
        if not (_is_num(v) and v > 0):
            slo = class_summary(r, cls).get("slo")
            v = slo.get("ttft_s") if isinstance(slo, dict) else None
        if _is_num(v) and v > 0:
            out.add(float(v))
    return sorted(out)


def run_duration(run: Run) -> Optional[float]:
    d = run.summary.get("duration_s")
    if _is_num(d) and d > 0:
        return float(d)
    if run.records:
        starts = [r.arrival_s for r in run.records if r.arrival_s is not None]
        ends = [r.finish_s if r.finish_s is not None else r.arrival_s for r in run.records]
        ends = [e for e in ends if e is not None]
        if starts and ends and max(ends) > min(starts):
            return max(ends) - min(starts)
    return None


def request_rate(run: Run) -> tuple[Optional[float], str]:
    """(rate in req/s, where it came from)."""
    v = run.extra.get("request_rate")
    if _is_num(v) and v > 0:
        return float(v), "extra.request_rate"
    arr = run.spec.get("arrivals")
    if isinstance(arr, dict) and arr.get("process") in ("poisson", "gamma"):
        v = arr.get("rate")
        if _is_num(v) and v > 0:
            return float(v), "spec arrivals.rate"
    dur = run_duration(run)
    n = len(run.records) if run.records is not None else run.summary.get("all", {}).get("requests")
    if dur and _is_int(n) and n > 0:
        return n / dur, "requests / duration"
    return None, ""


def be_throughput(run: Run) -> Optional[float]:
    """BE output tokens per second."""
    v = class_summary(run, "BE").get("output_throughput")
    if _is_num(v):
        return float(v)
    dur = run_duration(run)
    if run.records is not None and dur:
        return sum(r.output_tokens for r in run.records if r.cls == "BE" and r.finished_ok) / dur
    return None


def ls_ttft_mean_p99(run: Run) -> tuple[Optional[float], Optional[float]]:
    t = ttfts(run, "LS")
    if t is not None and t.size:
        return float(t.mean()), float(np.percentile(t, 99))
    return summary_stat(run, "LS", "ttft_s", "mean"), summary_stat(run, "LS", "ttft_s", "p99")


# --------------------------------------------------------------------------
# Plots


def _colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _fmt_ms(s: float) -> str:
    ms = s * 1000.0
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def _save(fig, out: str) -> str:
    p = Path(out)
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True)
        fig.tight_layout()
        fig.savefig(p, dpi=DPI)
    except OSError as e:
        raise OutputError(f"{out}: cannot write: {e}")
    finally:
        plt.close(fig)
    return str(p)


def plot_cdf(runs: list[Run], out: str, logx: bool = False) -> str:
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = dict(zip([r.display for r in runs], _colours(len(runs))))
    drawn, approximate, lo = 0, False, math.inf
    for run in runs:
        for cls in CLASSES:
            samples = ttfts(run, cls)
            colour, style = colours[run.display], CLASS_STYLE[cls]
            if samples is not None:
                if samples.size == 0:
                    continue
                x = np.sort(samples) * 1000.0
                y = np.arange(1, x.size + 1) / x.size
                p99 = float(np.percentile(samples, 99))
                ax.step(np.concatenate(([x[0]], x)), np.concatenate(([0.0], y)), where="post",
                        color=colour, linestyle=style, linewidth=1.8,
                        label=f"{run.display} · {cls} (n={x.size}, p99 {_fmt_ms(p99)})")
                lo = min(lo, x[0])
                drawn += 1
            else:  # summary only: its percentiles, joined
                pts = [(summary_stat(run, cls, "ttft_s", k), q) for k, q in SUMMARY_POINTS]
                pts = [(v * 1000.0, q) for v, q in pts if v is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                n = class_summary(run, cls).get("ttft_s", {}).get("count")
                n_text = f"n={n}, " if _is_int(n) else ""
                ax.plot(xs, ys, color=colour, linestyle=style, linewidth=1.2, marker="o",
                        markersize=4, label=f"{run.display} · {cls} ({n_text}summary percentiles)")
                lo = min(lo, xs[0])
                drawn += 1
                approximate = True
    if not drawn:
        plt.close(fig)
        raise InputError("no TTFT samples to plot: the runs have no completed requests "
                         "(no records, and no TTFT in their summaries)")
    for cls, colour in (("LS", "black"), ("BE", "dimgray")):
        for slo in ttft_slo(runs, cls):
            ax.axvline(slo * 1000.0, color=colour, linestyle=":" if cls == "LS" else "-.",
                       linewidth=1.3, label=f"{cls} TTFT SLO ({_fmt_ms(slo)})")
    if logx:
        ax.set_xscale("log")
        if lo > 0 and math.isfinite(lo):
            ax.set_xlim(left=lo / 1.5)
    else:
        ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time to first token (ms" + (", log scale)" if logx else ")"))
    ax.set_ylabel("fraction of completed requests")
    title = "TTFT CDF (LS solid, BE dashed)"
    if approximate:
        title += "\nruns without records: min / median / p90 / p99 / max from the summary"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right", framealpha=0.9)
    return _save(fig, out)


def rate_table(runs: list[Run]) -> dict[str, list[tuple[float, Optional[float], Optional[float], Optional[float]]]]:
    """policy -> [(rate, LS mean TTFT s, LS p99 TTFT s, BE tok/s)] sorted by rate."""
    lines: dict[str, list] = {}
    for run in runs:
        rate, _ = request_rate(run)
        if rate is None:
            sys.stderr.write(f"{PROG}: note: {run.source}: run '{run.label}' has no request rate "
                             "(no extra.request_rate, spec rate or duration); left out\n")
            continue
        mean, p99 = ls_ttft_mean_p99(run)
        lines.setdefault(run.policy, []).append((rate, mean, p99, be_throughput(run)))
    for v in lines.values():
        v.sort(key=lambda t: t[0])
    return lines


def plot_rate(runs: list[Run], out: str, logx: bool = False) -> str:
    lines = rate_table(runs)
    if not lines:
        raise InputError("no run has a request rate to plot against")
    rates = {t[0] for v in lines.values() for t in v}
    if len(rates) == 1:
        sys.stderr.write(f"{PROG}: note: every run is at {next(iter(rates)):g} req/s; "
                         "the plot shows points, not curves\n")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    colours = dict(zip(lines, _colours(len(lines))))
    any_ls = any_be = False
    top = {ax1: 0.0, ax2: 0.0}  # highest value drawn, for the y limits
    for policy, pts in lines.items():
        c = colours[policy]
        xs = [p[0] for p in pts]
        for idx, style, marker, name in ((1, "-", "o", "mean"), (2, "--", "^", "p99")):
            ys = [p[idx] * 1000.0 if p[idx] is not None else np.nan for p in pts]
            if not all(np.isnan(ys)):
                ax1.plot(xs, ys, color=c, linestyle=style, marker=marker, label=f"{policy} {name}")
                top[ax1] = max(top[ax1], float(np.nanmax(ys)))
                any_ls = True
        ys = [p[3] if p[3] is not None else np.nan for p in pts]
        if not all(np.isnan(ys)):
            ax2.plot(xs, ys, color=c, marker="s", label=policy)
            top[ax2] = max(top[ax2], float(np.nanmax(ys)))
            any_be = True
    for slo in ttft_slo(runs, "LS"):
        ax1.axhline(slo * 1000.0, color="black", linestyle=":", linewidth=1.3,
                    label=f"LS TTFT SLO ({_fmt_ms(slo)})")
        top[ax1] = max(top[ax1], slo * 1000.0)
    ax1.set_ylabel("LS time to first token (ms)")
    ax1.set_title("LS TTFT against request rate (mean solid, p99 dashed)")
    for ax, t in top.items():
        ax.set_ylim(0, t * 1.1 if t > 0 else 1.0)
    ax2.set_ylabel("BE output throughput (tok/s)")
    ax2.set_title("BE output throughput against request rate")
    ax2.set_xlabel("request rate (req/s)")
    if logx:
        ax2.set_xscale("log")
    for ax, any_line, what in ((ax1, any_ls, "LS requests"), (ax2, any_be, "BE throughput")):
        ax.grid(True, alpha=0.3)
        if any_line:
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      borderaxespad=0)
        else:
            ax.text(0.5, 0.5, f"no {what} in these runs", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
    return _save(fig, out)


def pick_run(runs: list[Run], label: Optional[str]) -> Run:
    if label is not None:
        hits = [r for r in runs if label in (r.label, r.display, r.policy)]
        if not hits:
            names = ", ".join(sorted({r.display for r in runs}))
            raise InputError(f"no run labelled '{label}' (runs: {names})")
        if len(hits) > 1:
            names = ", ".join(r.display for r in hits)
            raise InputError(f"'{label}' matches {len(hits)} runs ({names}); name one of those")
        return hits[0]
    with_units = [r for r in runs if r.has_units()]
    if not with_units:
        runs[0].units()  # raises the message for the first run
    if len(runs) > 1:
        others = ", ".join(r.display for r in runs if r is not with_units[0])
        sys.stderr.write(f"{PROG}: note: timeline of run '{with_units[0].display}' "
                         f"(others: {others}; choose with --run LABEL)\n")
    return with_units[0]


def _paused_gaps(units: list[Unit]) -> list[tuple[int, float, float]]:
    """(slot, from, to): a slot's pass stood still after a non-head unit while
    another slot ran units: the pass was preempted at a unit boundary."""
    by_slot: dict[int, list[Unit]] = {}
    for u in units:
        by_slot.setdefault(u.slot, []).append(u)
    starts = sorted((u.start_s, u.slot) for u in units)
    start_times = np.array([s for s, _ in starts])
    gaps = []
    for slot, us in by_slot.items():
        us.sort(key=lambda u: u.start_s)
        for a, b in zip(us, us[1:]):
            if a.kind == "head" or b.start_s <= a.end_s:
                continue
            lo, hi = np.searchsorted(start_times, [a.end_s, b.start_s])
            if any(starts[i][1] != slot for i in range(lo, hi)):
                gaps.append((slot, a.end_s, b.start_s))
    return gaps


def _unit_text(u: Unit) -> str:
    if u.kind == "attn":
        return f"A{u.layer}" if u.layer is not None else "A"
    if u.kind == "expert":
        if u.layer is not None and u.expert is not None:
            return f"E{u.layer}.{u.expert}"
        return "E"
    if u.kind == "head":
        return "H"
    return u.kind[:1]


def _window(run: Run, units: list[Unit], start: Optional[float], end: Optional[float],
            max_units: int) -> tuple[float, float]:
    """The time window to draw. Without --start/--end and with more than
    max_units units, max_units units around the first LS arrival that found
    another slot's pass running (where preemption shows), else from the start."""
    t0, t1 = units[0].start_s, max(u.end_s for u in units)
    if start is not None and end is not None:
        return start, end
    if max_units == 0 or (start is None and end is None and len(units) <= max_units):
        return (t0 if start is None else start), (t1 if end is None else end)
    starts = [u.start_s for u in units]
    if end is not None:  # max_units units up to `end`
        i = max(0, bisect.bisect_right(starts, end) - max_units)
        return units[i].start_s, end
    if start is not None:
        i = bisect.bisect_left(starts, start)
        lo, why = start, ""
    else:
        i, lo, why = 0, t0, ""
        ends = np.maximum.accumulate([u.end_s for u in units])  # sorted, for bisect
        for r in sorted(run.records or [], key=lambda r: r.arrival_s or 0.0):
            if r.cls != "LS" or r.arrival_s is None:
                continue
            j = int(np.searchsorted(ends, r.arrival_s))
            if j < len(units) and units[j].start_s <= r.arrival_s and units[j].cls != "LS":
                i = max(0, j - max_units // 10)
                lo, why = units[i].start_s, f" around the LS arrival at {r.arrival_s:.6g} s"
                break
    j = min(len(units), i + max_units) - 1
    hi = units[j].end_s
    sys.stderr.write(f"{PROG}: note: showing {lo:.6g}-{hi:.6g} s ({max_units} of {len(units)} "
                     f"units{why}); choose with --start/--end, or --max-units 0 for all\n")
    return lo, hi


def plot_timeline(runs: list[Run], out: str, label: Optional[str] = None,
                  start: Optional[float] = None, end: Optional[float] = None,
                  max_units: int = 200) -> str:
    run = pick_run(runs, label)
    units = run.units()
    if not units:
        raise InputError(f"{run.source}: run '{run.label}' has an empty unit log (extra.units is [])")
    units = sorted(units, key=lambda u: u.start_s)
    t0, t1 = units[0].start_s, max(u.end_s for u in units)
    if start is not None and end is not None and end <= start:
        raise InputError(f"--end ({end}) must be after --start ({start})")
    if (start is not None and start >= t1) or (end is not None and end <= t0):
        raise InputError(f"no units in the window asked for (the log covers {t0:g}-{t1:g} s)")
    lo, hi = _window(run, units, start, end, max_units)
    if hi <= lo:
        raise InputError(f"the window {lo:g}-{hi:g} s is empty")
    view = [u for u in units if u.end_s > lo and u.start_s < hi]
    if not view:
        raise InputError(f"no units between {lo:g} s and {hi:g} s (the log covers "
                         f"{t0:g}-{t1:g} s)")
    span = hi - lo
    scale, unit_name = (1000.0, "ms") if span < 2.0 else (1.0, "s")

    slots = sorted({u.slot for u in units})
    slot_cls: dict[int, str] = {}
    for s in slots:
        classes = [u.cls for u in units if u.slot == s and u.cls]
        slot_cls[s] = max(set(classes), key=classes.count) if classes else "?"
    ls_arrivals, ls_first = [], []
    if run.records is not None:
        for r in run.records:
            if r.cls != "LS":
                continue
            if r.arrival_s is not None and lo <= r.arrival_s <= hi:
                ls_arrivals.append(r.arrival_s)
            if r.first_token_s is not None and lo <= r.first_token_s <= hi:
                ls_first.append(r.first_token_s)

    rows = len(slots) + 1  # + the LS request row on top
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.75 * rows))
    y_of = {s: len(slots) - i for i, s in enumerate(slots)}  # slot 0 at the top
    y_req = len(slots) + 1
    bar_h = 0.7
    few = len(view) <= 300
    kinds_seen = []
    for kind in sorted({u.kind for u in view}, key=lambda k: (k not in KIND_COLOURS, k)):
        colour = KIND_COLOURS.get(kind, OTHER_KIND_COLOUR)
        kinds_seen.append((kind, colour))
        for s in slots:
            bars = [((u.start_s - lo) * scale, (u.end_s - u.start_s) * scale)
                    for u in view if u.slot == s and u.kind == kind]
            if bars:
                ax.broken_barh(bars, (y_of[s] - bar_h / 2, bar_h), facecolors=colour,
                               edgecolors="white" if few else "none", linewidth=0.6 if few else 0)
    gaps = [g for g in _paused_gaps(units) if g[2] >= lo and g[1] <= hi]
    for s, a, b in gaps:
        ax.add_patch(plt.Rectangle(((a - lo) * scale, y_of[s] - bar_h / 2), (b - a) * scale, bar_h,
                                   facecolor=PAUSE_COLOUR, alpha=0.18, edgecolor=PAUSE_COLOUR,
                                   hatch="///", linewidth=0))
    if few:  # name units wide enough to hold text
        for u in view:
            w = (u.end_s - u.start_s) / span
            if w > 0.006 * (len(_unit_text(u)) + 1):
                x = (max(u.start_s, lo) + min(u.end_s, hi)) / 2
                ax.text((x - lo) * scale, y_of[u.slot], _unit_text(u), ha="center", va="center",
                        fontsize=6.5, color="white", clip_on=True)
    for t in ls_arrivals:
        ax.axvline((t - lo) * scale, color=PAUSE_COLOUR, alpha=0.25, linewidth=0.8, zorder=0)
    if ls_arrivals:
        ax.plot([(t - lo) * scale for t in ls_arrivals], [y_req] * len(ls_arrivals), "v",
                color=PAUSE_COLOUR, markersize=8, linestyle="none")
    if ls_first:
        ax.plot([(t - lo) * scale for t in ls_first], [y_req] * len(ls_first), "D",
                color="black", markersize=5, linestyle="none")

    ax.set_yticks([y_of[s] for s in slots] + [y_req])
    ax.set_yticklabels([f"slot {s} ({slot_cls[s]})" for s in slots] + ["LS requests"])
    ax.set_ylim(0.4, y_req + 0.6)
    ax.set_xlim(0, span * scale)
    origin = f" since {lo * scale:.6g} {unit_name}" if lo != 0 else ""
    ax.set_xlabel(f"time{origin} on the run clock ({unit_name})")
    pol = run.policy if run.policy != run.label else ""
    disp = run.extra.get("dispatcher")
    what = ", ".join(x for x in (pol, f"{disp} dispatcher" if isinstance(disp, str) else "") if x)
    ax.set_title(f"Per-unit timeline: {run.display}" + (f" ({what})" if what else "")
                 + f"\n{len(view)} units, {lo * scale:.6g}-{hi * scale:.6g} {unit_name}")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(facecolor=c, label=k) for k, c in kinds_seen]
    if gaps:
        handles.append(Patch(facecolor=PAUSE_COLOUR, alpha=0.3, hatch="///",
                             label="pass paused (preempted)"))
    if ls_arrivals:
        handles.append(Line2D([], [], marker="v", color=PAUSE_COLOUR, linestyle="none",
                              label="LS arrival"))
    if ls_first:
        handles.append(Line2D([], [], marker="D", color="black", linestyle="none",
                              label="LS first token"))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.005, 1.0),
              borderaxespad=0)
    if run.records is None:
        sys.stderr.write(f"{PROG}: note: {run.source} has no records; LS arrivals not marked\n")
    return _save(fig, out)


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "run"


def plot_all(runs: list[Run], out_dir: str, logx: bool, max_units: int) -> list[str]:
    d = Path(out_dir)
    written = []

    def attempt(what: str, f: Callable[[], str]) -> None:
        try:
            written.append(f())
        except InputError as e:
            sys.stderr.write(f"{PROG}: note: {what} skipped: {e}\n")

    attempt("ttft_cdf.png", lambda: plot_cdf(runs, str(d / "ttft_cdf.png"), logx=logx))
    rates = {request_rate(r)[0] for r in runs} - {None}
    if len(rates) >= 2:
        attempt("latency_vs_rate.png",
                lambda: plot_rate(runs, str(d / "latency_vs_rate.png"), logx=False))
    else:
        sys.stderr.write(f"{PROG}: note: latency_vs_rate.png skipped: the runs do not span "
                         "two request rates\n")
    with_units = [r for r in runs if r.has_units()]
    if not with_units:
        sys.stderr.write(f"{PROG}: note: timeline skipped: no run has a per-unit log "
                         "(extra.units as a list)\n")
    for r in with_units:
        name = "timeline.png" if len(with_units) == 1 else f"timeline_{_safe_name(r.display)}.png"
        attempt(name, lambda r=r, name=name: plot_timeline(
            [r], str(d / name), max_units=max_units))
    if not written:
        raise InputError("nothing to plot from these files")
    return written


# --------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Plots of qllm run JSON (qllm-runs/1 from `qllm run`, "
        "qllm-run/1 from `qllm bench`).")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{cdf,rate,timeline,all}")

    c = sub.add_parser("cdf", help="TTFT CDF per run and class")
    c.add_argument("files", nargs="+", metavar="RUN.json")
    c.add_argument("-o", "--out", default="ttft_cdf.png", help="PNG to write (default %(default)s)")
    c.add_argument("--logx", action="store_true", help="log-scale TTFT axis")

    r = sub.add_parser("rate", help="LS TTFT and BE throughput against request rate")
    r.add_argument("files", nargs="+", metavar="RUN.json")
    r.add_argument("-o", "--out", default="latency_vs_rate.png",
                   help="PNG to write (default %(default)s)")
    r.add_argument("--logx", action="store_true", help="log-scale rate axis")

    t = sub.add_parser("timeline", help="per-unit timeline of one run (needs extra.units)")
    t.add_argument("files", nargs="+", metavar="RUN.json")
    t.add_argument("--run", metavar="LABEL", help="run label or policy (default: first with units)")
    t.add_argument("--start", type=float, metavar="S", help="window start, s on the run clock")
    t.add_argument("--end", type=float, metavar="S", help="window end, s on the run clock")
    t.add_argument("--max-units", type=int, default=200, metavar="N",
                   help="without --end, show at most N units (0 = all; default %(default)s)")
    t.add_argument("-o", "--out", default="timeline.png", help="PNG to write (default %(default)s)")

    a = sub.add_parser("all", help="every plot that applies, into --out-dir")
    a.add_argument("files", nargs="+", metavar="RUN.json")
    a.add_argument("--out-dir", required=True, metavar="DIR")
    a.add_argument("--logx", action="store_true", help="log-scale TTFT axis of the CDF")
    a.add_argument("--max-units", type=int, default=200, metavar="N",
                   help="units per timeline (0 = all; default %(default)s)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = load_all(args.files)
        if args.cmd == "cdf":
            written = [plot_cdf(runs, args.out, logx=args.logx)]
        elif args.cmd == "rate":
            written = [plot_rate(runs, args.out, logx=args.logx)]
        elif args.cmd == "timeline":
            if args.max_units < 0:
                raise InputError("--max-units must be 0 or more")
            written = [plot_timeline(runs, args.out, label=args.run, start=args.start,
                                     end=args.end, max_units=args.max_units)]
        else:
            written = plot_all(runs, args.out_dir, logx=args.logx, max_units=args.max_units)
    except InputError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    except OutputError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
