"""Where a live array run's time goes, seen from the tasks: the bench's array cases
(bench/slurm_vs_detente.py) on ``detente up --nodes 16x8``, each task writing when its
script started and ended (``$EPOCHREALTIME``). Prints JSON per run: wall time (first
submit to no live job, polled as the bench polls), the first task's start after the
submit, the span of the tasks, and — for ``sleep`` — the gaps between a task's end
and the next task's first line on the same GPU (the control plane's share of a wave),
split by the store's own times (``chain_ms``): from a task's end to the settle that
recorded it (its clock, the job's ``end_time``), from there to the next task's
admission (its ``Admitted`` event), and from that to the next task's first line.

To compare two codes, alternate them: ``PYTHONPATH=/path/to/other/src`` makes the
daemon (and its spawners) run that tree's detente.

    python bench/live_gaps.py [--kind sleep|true] [--reps 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from detente.testing.live import Live
from scratch import Scratch

BODY = {"sleep": "sleep 1", "true": "true"}


def run(kind: str, d: Path) -> dict[str, Any]:
    home, stamps = Path(d), Path(d) / "stamps"
    script = home / f"{kind}.sh"
    script.write_text(f'#!/bin/bash\ns=$EPOCHREALTIME\n{BODY[kind]}\n'
                      f'echo "$s $EPOCHREALTIME $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES'
                      f' $SLURM_JOB_ID" >> {stamps}\n')  # fmt: skip
    live = Live(home)
    live.up("--nodes", "16x8")
    try:
        opts = ["--gres=gpu:1"] if kind == "sleep" else []
        t0, submitted = time.monotonic(), time.time()
        for _ in range(2):
            live.cli("submit", "-o", "/dev/null", "--array=0-999", *opts, str(script))
        # One kept client: a new one a poll made its TLS context (≈ 25 ms of CPU,
        # ten times a second) on the machine the run is measured on.
        with httpx.Client(headers={"Authorization": f"Bearer {live.token}"}) as c:
            while c.get(f"{live.url}/v1/jobs", params={"fields": "id"}).json():
                time.sleep(0.1)
        wall = time.monotonic() - t0
    finally:
        live.down()
    out = {"wall_s": round(wall, 2), **_tasks(stamps.read_text(), submitted)}
    if kind == "sleep":
        out["chain_ms"] = _chain(stamps.read_text(), home / "detente.db")
    return out


def _tasks(text: str, submitted: float) -> dict[str, Any]:
    by_gpu: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for line in text.splitlines():
        start, end, node, *rest = line.split()  # rest: [GPUs,] job id
        gpus = rest[0] if len(rest) == 2 else ""
        by_gpu[(node, gpus)].append((float(start), float(end)))
    runs = [r for rs in by_gpu.values() for r in rs]
    out: dict[str, Any] = {
        "tasks": len(runs),
        "first_start_s": round(min(s for s, _ in runs) - submitted, 3),
        "span_s": round(max(e for _, e in runs) - min(s for s, _ in runs), 2),
    }
    waves = [sorted(rs) for rs in by_gpu.values()]
    gaps = sorted(b[0] - a[1] for rs in waves for a, b in itertools.pairwise(rs))
    if gaps and all(gpus for _, gpus in by_gpu):  # a GPU a task: its next task's wait
        out["gap_ms"] = {"median": round(1000 * statistics.median(gaps)),
                         "mean": round(1000 * statistics.mean(gaps)),
                         "p90": round(1000 * gaps[int(0.9 * len(gaps))])}  # fmt: skip
    return out


def _chain(text: str, db: Path) -> dict[str, dict[str, int]]:
    """Each gap on a GPU split at the store's times (see the module's docstring)."""
    with sqlite3.connect(db) as c:
        admitted = dict(c.execute("select job_id, time from events where kind = 'Admitted'"))
        ended = dict(c.execute("select id, end_time from jobs"))
    by_gpu: dict[tuple[str, str], list[tuple[float, float, int]]] = defaultdict(list)
    for line in text.splitlines():
        start, end, node, gpus, job = line.split()
        by_gpu[(node, gpus)].append((float(start), float(end), int(job)))
    parts: dict[str, list[float]] = defaultdict(list)
    for runs in by_gpu.values():
        for (_, a_end, a), (b_start, _, b) in itertools.pairwise(sorted(runs)):
            parts["end_to_settle"].append(ended[a] - a_end)
            parts["settle_to_admitted"].append(admitted[b] - ended[a])
            parts["admitted_to_first_line"].append(b_start - admitted[b])
    return {k: {"median": round(1000 * statistics.median(v)),
                "mean": round(1000 * statistics.mean(v))} for k, v in parts.items()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=sorted(BODY), default="sleep")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with Scratch() as scratch:  # run folders removed at the end (`scratch`)
        runs = [run(args.kind, scratch.new()) for _ in range(args.reps)]
    print(json.dumps({"kind": args.kind, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
