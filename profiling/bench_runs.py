"""Reading qllm run files: the records, unit logs and summaries that `qllm
run` ("qllm-runs/1") and `qllm bench` ("qllm-run/1") write, validated field by
field, and the per-class quantities the plots draw. Field names follow
engine/workload/report.cpp (records, summary) and
engine/workload/workload_spec.cpp (spec). Bad input raises InputError with a
message naming the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

CLASSES = ("LS", "BE")
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
