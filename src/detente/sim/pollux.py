"""Run times for the Pollux/Sia 160-job workloads (``name, time, application,
num_replicas, batch_size``), from Pollux's measured throughput profiles.

The workloads name a model and a fixed (replicas, batch size), not a run time; Pollux's
simulator derives one from the application's traces. We do the same, for the
non-adaptive case its Tiresias baseline runs (replicas and batch size fixed):

    run time = epochs × ceil(samples per epoch / batch size) × iteration time

``epochs`` is the application's maximum in Pollux's validation traces (so a run time
is an upper bound: Pollux stops at a target metric), and the iteration time is the
measured step + sync time of the fastest placement of ``num_replicas`` replicas at the
nearest measured per-replica batch size, scaled linearly past the largest measured
one. The table is derived by ``scripts/derive_pollux_profiles.py`` (Pollux,
Apache-2.0).
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

COLUMNS = {"name", "time", "application", "num_replicas", "batch_size"}


@lru_cache(maxsize=1)
def profiles() -> dict[str, Any]:
    text = resources.files("detente.data").joinpath("pollux_profiles.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def iteration_time(app: str, replicas: int, local_bsz: float) -> float:
    """Seconds per step of ``replicas`` replicas at ``local_bsz`` samples each."""
    table = profiles()[app]["iter_time"]
    counts = sorted(int(k) for k in table)
    i = bisect.bisect_left(counts, replicas)
    near = counts[min(i, len(counts) - 1)]
    rows: list[list[float]] = table[str(near)]
    bszs = [r[0] for r in rows]
    j = min(bisect.bisect_left(bszs, local_bsz), len(rows) - 1)
    if j > 0 and abs(bszs[j - 1] - local_bsz) <= abs(bszs[j] - local_bsz):
        j -= 1
    bsz, t = rows[j]
    return t * max(1.0, local_bsz / bsz)


def run_time(app: str, replicas: int, batch_size: int) -> float:
    """Seconds to train ``app`` for its epochs at a fixed ``replicas`` and ``batch_size``."""
    p = profiles()[app]
    steps = p["epochs"] * math.ceil(p["samples_per_epoch"] / batch_size)
    return float(steps * iteration_time(app, replicas, batch_size / replicas))


def parse(
    reader: csv.DictReader[str], path: Path, window: tuple[str, str] | None
) -> Iterator[tuple[str, float, float, float, str]]:
    """(name, submit, duration, gpus, queue) per row; errors name file, line and column."""
    from detente.sim.traces import TraceError, _num

    apps = profiles()
    for i, row in enumerate(reader, start=2):
        app = row.get("application", "")
        if app not in apps:
            raise TraceError(
                f"{path}:{i}: column 'application': unknown application {app!r} "
                f"(known: {', '.join(sorted(apps))})"
            )
        reps = int(_num(path, i, row, "num_replicas"))
        bsz = int(_num(path, i, row, "batch_size"))
        if reps < 1 or bsz < reps:
            raise TraceError(f"{path}:{i}: num_replicas {reps} and batch_size {bsz} do not fit")
        yield (
            row.get("name") or f"{app}-{i - 1}",
            _num(path, i, row, "time"),
            run_time(app, reps, bsz),
            float(reps),
            "default",
        )
