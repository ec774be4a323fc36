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
import math
import re
import sys
from pathlib import Path
from typing import Callable, Optional

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
CLASS_STYLE = {"LS": "-", "BE": "--"}
KIND_COLOURS = {"attn": "#4C72B0", "expert": "#DD8452", "head": "#55A868"}
OTHER_KIND_COLOUR = "#8C8C8C"
PAUSE_COLOUR = "#C44E52"


from bench_runs import (CLASSES, SUMMARY_POINTS, InputError, OutputError, Run, Unit, _is_int, be_throughput,
                        class_summary, load_all, ls_ttft_mean_p99, request_rate, summary_stat, ttft_slo, ttfts)


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
