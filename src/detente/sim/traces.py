"""Trace loaders: real GPU-cluster traces → `TraceJob`s, format detected from the header.

Formats (schemas in ../shared/traces/README.md):

* ``philly``: Microsoft Philly as processed by Pollux — ``timestamp, duration, num_gpus,
  gpu_time, cluster`` (VC). Ships inside the package (CC-BY-4.0).
* ``itp``: Microsoft ITP raw — ``job_id, submission_time, duration, num_gpu``.
* ``openb``: Alibaba openb pods — ``name, cpu_milli, memory_mib, num_gpu, gpu_milli, …,
  creation_time, deletion_time, scheduled_time``; fractional GPUs via ``gpu_milli``.
* ``pollux``: the Pollux/Sia 160-job workloads — ``name, time, application,
  num_replicas, batch_size``; run times from Pollux's throughput profiles
  (`detente.sim.pollux`).
* ``synthetic``: Poisson arrivals, Philly's GPU-count mix, log-normal run times.

Every loader returns jobs sorted by submit time, times in seconds from the first
submission. Bad rows raise ``TraceError`` naming the file, line and column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from detente.sim import pollux

FORMATS = ("philly", "itp", "openb", "pollux", "synthetic")
#: The bundled default: two days of Philly (2017-10-02 and -03), about 1,900 jobs.
SAMPLE_WINDOW = ("2017-10-02 00:00:00", "2017-10-04 00:00:00")


class TraceError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TraceJob:
    name: str
    submit: float
    duration: float
    gpus: float
    queue: str = "default"
    cpu_milli: int = 0
    memory: int = 0


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")  # type: ignore[return-value]
    return path.open(newline="")


def detect(header: list[str]) -> str | None:
    cols = set(header)
    if {"timestamp", "duration", "num_gpus"} <= cols:
        return "philly"
    if {"submission_time", "duration", "num_gpu"} <= cols:
        return "itp"
    if {"num_gpu", "gpu_milli", "creation_time"} <= cols:
        return "openb"
    if cols >= pollux.COLUMNS:
        return "pollux"
    return None


def bundled(name: str) -> Path:
    return Path(str(resources.files("detente.data").joinpath(name)))


def load(
    spec: str, fmt: str | None = None, seed: int = 0, limit: int | None = None
) -> list[TraceJob]:
    """``spec``: ``philly``, ``philly-sample``, ``synthetic[:N]`` or a file path."""
    if spec == "philly":
        jobs = _read(bundled("philly.csv.gz"), "philly")
    elif spec == "philly-sample":
        jobs = _read(bundled("philly.csv.gz"), "philly", window=SAMPLE_WINDOW)
    elif spec.startswith("synthetic"):
        n = int(spec.split(":", 1)[1]) if ":" in spec else 2000
        jobs = synthetic(n, seed)
    else:
        path = Path(spec)
        if not path.exists():
            raise TraceError(
                f"{spec}: no such trace file (names: philly, philly-sample, synthetic[:N])"
            )
        jobs = _read(path, fmt)
    jobs.sort(key=lambda j: (j.submit, j.name))
    if limit is not None:
        jobs = jobs[:limit]
    t0 = jobs[0].submit if jobs else 0.0
    return [
        TraceJob(j.name, j.submit - t0, j.duration, j.gpus, j.queue, j.cpu_milli, j.memory)
        for j in jobs
    ]


def _read(path: Path, fmt: str | None, window: tuple[str, str] | None = None) -> list[TraceJob]:
    with _open(path) as f:
        reader = csv.DictReader(f)  # type: ignore[arg-type]
        kind = fmt or detect(list(reader.fieldnames or []))
        if kind is None:
            raise TraceError(
                f"{path}: unknown trace format (header {reader.fieldnames}); use --trace-format"
            )
        rows = _PARSERS[kind](reader, path, window)
        return list(rows)


def _num(path: Path, line: int, row: dict[str, str], col: str) -> float:
    try:
        v = float(row[col])
    except (KeyError, TypeError, ValueError):
        raise TraceError(f"{path}:{line}: column {col!r}: not a number: {row.get(col)!r}") from None
    if math.isnan(v) or v < 0:
        raise TraceError(f"{path}:{line}: column {col!r}: bad value {row[col]!r}")
    return v


def _philly(
    reader: csv.DictReader[str], path: Path, window: tuple[str, str] | None
) -> Iterator[TraceJob]:
    for i, row in enumerate(reader, start=2):
        ts = row.get("timestamp", "")
        if window and not (window[0] <= ts < window[1]):
            continue
        try:
            t = datetime.fromisoformat(ts).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise TraceError(f"{path}:{i}: column 'timestamp': bad time {ts!r}") from None
        gpus = _num(path, i, row, "num_gpus")
        yield TraceJob(
            f"philly-{i - 1}",
            t,
            _num(path, i, row, "duration"),
            gpus,
            row.get("cluster") or "default",
        )


def _itp(
    reader: csv.DictReader[str], path: Path, window: tuple[str, str] | None
) -> Iterator[TraceJob]:
    for i, row in enumerate(reader, start=2):
        yield TraceJob(
            row.get("job_id") or f"itp-{i - 1}",
            _num(path, i, row, "submission_time"),
            _num(path, i, row, "duration"),
            _num(path, i, row, "num_gpu"),
            path.stem,
        )


def _openb(
    reader: csv.DictReader[str], path: Path, window: tuple[str, str] | None
) -> Iterator[TraceJob]:
    for i, row in enumerate(reader, start=2):
        gpus = _num(path, i, row, "num_gpu")
        milli = _num(path, i, row, "gpu_milli") if row.get("gpu_milli") else 1000.0
        if gpus == 1 and milli < 1000:
            gpus = milli / 1000
        created = _num(path, i, row, "creation_time") if row.get("creation_time") else 0.0
        start = _num(path, i, row, "scheduled_time") if row.get("scheduled_time") else created
        end = _num(path, i, row, "deletion_time") if row.get("deletion_time") else start + 1
        yield TraceJob(
            row.get("name") or f"openb-{i - 1}",
            created,
            max(end - start, 1.0),
            gpus,
            row.get("qos") or "default",
            int(_num(path, i, row, "cpu_milli")),
            int(_num(path, i, row, "memory_mib")) * 2**20,
        )


def _pollux(
    reader: csv.DictReader[str], path: Path, window: tuple[str, str] | None
) -> Iterator[TraceJob]:
    for name, submit, duration, gpus, queue in pollux.parse(reader, path, window):
        yield TraceJob(name, submit, duration, gpus, queue)


_PARSERS = {"philly": _philly, "itp": _itp, "openb": _openb, "pollux": _pollux}

#: Philly's GPU-count mix (trace README), for the synthetic generator.
PHILLY_MIX = {1: 76627, 2: 1818, 4: 1870, 8: 1643, 16: 199, 32: 67, 64: 6}


def synthetic(n: int, seed: int = 0, mean_gap: float = 60.0) -> list[TraceJob]:
    """Poisson arrivals (mean gap ``mean_gap`` s), Philly's size mix, log-normal run times
    with Philly's median (1,144 s) and a heavy tail."""
    rng = random.Random(seed)
    sizes, weights = zip(*PHILLY_MIX.items(), strict=True)
    t, out = 0.0, []
    for i in range(n):
        t += rng.expovariate(1 / mean_gap)
        g = rng.choices(sizes, weights)[0]
        d = max(60.0, rng.lognormvariate(math.log(1144), 1.8))
        out.append(TraceJob(f"syn-{i}", t, d, float(g), f"vc{rng.randrange(4)}"))
    return out
