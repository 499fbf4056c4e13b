"""Does the ``slurm`` profile start jobs in the order real slurmctld does?

One seeded workload of gangs (1–8 whole nodes, or 4 GPUs of one node), minute time
limits and run times of seconds is replayed on a real Slurm (`replay`, with
``sbatch`` at the arrival times) and then simulated from what Slurm recorded (its
submit times and each job's measured run time) on the same nodes and leaf switches
(`simulate`). `compare` counts the job pairs both start in the same order — pairs
Slurm started within one second of each other are left out, since Slurm records
whole seconds — and the median start-time error.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from detente.core.profiles import build
from detente.executors.slurm_jobs import parse_jobs
from detente.sim.driver import Simulation
from detente.testing import World, a_job, racks

#: (nodes, GPUs per node, exclusive) and their weights.
SHAPES = [((1, 4, False), 3), ((1, 8, True), 3), ((2, 8, True), 3), ((4, 8, True), 2),
          ((8, 8, True), 1)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    nodes: int
    gpus: int
    exclusive: bool
    limit_min: int
    run_s: int
    arrival_s: float


@dataclass(frozen=True, slots=True)
class Run:
    """What Slurm recorded for one job, in seconds from the first submission."""

    submit: float
    start: float
    end: float


def workload(n: int = 200, seed: int = 7, gap: float = 0.4) -> list[Job]:
    """``n`` jobs arriving ``gap`` seconds apart on average (exponential gaps)."""
    rng = random.Random(seed)
    shapes, weights = zip(*SHAPES, strict=True)
    t, out = 0.0, []
    for i in range(n):
        nodes, gpus, excl = rng.choices(shapes, weights)[0]
        run = rng.randint(1, 5)
        out.append(Job(f"j{i:03d}", nodes, gpus, excl, rng.choice([1, 2, 3, 5]), run, t))
        t += rng.expovariate(1 / gap)
    return out


def replay(jobs: list[Job], env: Mapping[str, str], timeout: float = 1200) -> dict[str, Run]:
    """Submits ``jobs`` to a real Slurm at their arrival times and waits for all to
    end; what Slurm recorded, by job name."""
    t0, ids = time.monotonic(), {}
    for j in jobs:
        time.sleep(max(0.0, j.arrival_s - (time.monotonic() - t0)))
        argv = ["sbatch", "--parsable", "-J", j.name, "-N", str(j.nodes),
                f"--gres=gpu:{j.gpus}", "-t", str(j.limit_min), "-o", "/dev/null",
                "--wrap", f"sleep {j.run_s}"]  # fmt: skip
        if j.exclusive:
            argv.append("--exclusive")
        out = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=True)
        ids[int(out.stdout.strip().split(";")[0])] = j.name
    while time.monotonic() - t0 < timeout:
        seen = _show(env)
        if all(i in seen and seen[i].ended for i in ids):
            break
        time.sleep(1)
    text = subprocess.run(["scontrol", "-o", "show", "job"], env=dict(env), capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    return _runs(text, ids)


def _show(env: Mapping[str, str]) -> dict[int, object]:
    text = subprocess.run(["scontrol", "-o", "show", "job"], env=dict(env), capture_output=True,
                          text=True).stdout  # fmt: skip
    return dict(parse_jobs(text))


def _runs(text: str, ids: dict[int, str]) -> dict[str, Run]:
    from detente.executors.slurm_jobs import timestamp
    from detente.executors.slurm_nodes import fields

    rows = {}
    for line in text.splitlines():
        f = fields(line)
        if f.get("JobId", "").isdigit() and int(f["JobId"]) in ids:
            times = [timestamp(f.get(k, "")) for k in ("SubmitTime", "StartTime", "EndTime")]
            if None not in times:
                rows[ids[int(f["JobId"])]] = Run(*(float(x) for x in times))  # type: ignore[arg-type]
    first = min(r.submit for r in rows.values())
    return {k: Run(r.submit - first, r.start - first, r.end - first) for k, r in rows.items()}


def simulate(jobs: list[Job], real: dict[str, Run], profile: str = "slurm") -> dict[str, float]:
    """Start times the ``profile`` gives the jobs, arriving when Slurm recorded their
    submission and running as long as they ran there; nodes as ``scripts/slurm``
    lays them out (leaf switches of 4)."""
    nodes = max(j.nodes for j in jobs)
    leaves = {f"leaf{k}": min(4, nodes - 4 * k) for k in range((nodes + 3) // 4)}
    sim = Simulation(World(racks(leaves)).snapshot(), build(profile))
    for seq, j in enumerate(sorted(jobs, key=lambda j: real[j.name].submit)):
        r = real[j.name]
        b = a_job(j.name).nodes(j.nodes, gpus=j.gpus).submitted(r.submit, seq=seq)
        w = (b.exclusive() if j.exclusive else b).build()
        sim.submit(replace(w, time_limit=60.0 * j.limit_min), max(r.end - r.start, 0.5))
    done = sim.run()
    return {n: float(s.start) for n, s in done.items() if s.start is not None}


def to_json(jobs: list[Job], real: dict[str, Run]) -> dict[str, Any]:
    """A replay as recorded (the workload and what Slurm did with it)."""
    return {"jobs": [asdict(j) for j in jobs], "slurm": {k: asdict(r) for k, r in real.items()}}


def from_json(data: dict[str, Any]) -> tuple[list[Job], dict[str, Run]]:
    jobs = [Job(**j) for j in data["jobs"]]
    return jobs, {k: Run(**r) for k, r in data["slurm"].items()}


def compare(real: dict[str, float], sim: dict[str, float], tie: float = 1.0) -> dict[str, float]:
    """Share of job pairs started in the same order (pairs Slurm started less than
    ``tie`` seconds apart left out) and the median absolute start-time error."""
    names = sorted(set(real) & set(sim))
    same = total = 0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if abs(real[a] - real[b]) < tie:
                continue
            total += 1
            same += (real[a] < real[b]) == (sim[a] < sim[b])
    errors = [abs(real[n] - sim[n]) for n in names]
    return {"jobs": len(names), "pairs": total, "same_order": round(same / max(total, 1), 4),
            "median_start_error_s": round(statistics.median(errors), 2) if errors else 0.0,
            "p90_start_error_s": round(sorted(errors)[int(0.9 * (len(errors) - 1))], 2)
            if errors else 0.0}  # fmt: skip
