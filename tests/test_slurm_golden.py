"""Golden: the start order real Slurm 22.05 gave on the mixed gang workload.

../shared/peers/slurm (bench_backfill.sh, results/jobs-bf-*.csv): 16 nodes × 8 GPUs
in 4 leaves of 4; jobs submitted 0.3 s apart, every 8-GPU-per-node job exclusive:
A 12 nodes / 2 min limit (runs 20 s), B 16 / 2 min (10 s), C 4 / 1 min (10 s),
D 4 / 5 min (10 s), E 1 node × 4 GPUs / 1 min (5 s), F 2 / 1 min (5 s).
sched/backfill started A C E F B D; sched/builtin A B C D E F.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from detente.core.profiles import build
from detente.core.workload import Workload
from detente.sim.driver import Simulation
from detente.testing import World, a_job, racks

JOBS = [
    # name, nodes, gpus per node, exclusive, limit (s), runtime (s)
    ("A", 12, 8, True, 120, 20),
    ("B", 16, 8, True, 120, 10),
    ("C", 4, 8, True, 60, 10),
    ("D", 4, 8, True, 300, 10),
    ("E", 1, 4, False, 60, 5),
    ("F", 2, 8, True, 60, 5),
]


def workloads() -> list[tuple[Workload, float]]:
    out = []
    for i, (name, nodes, gpus, excl, limit, run) in enumerate(JOBS):
        b = a_job(name).nodes(nodes, gpus=gpus).submitted(round(0.3 * i, 1), seq=i)
        b = b.exclusive() if excl else b
        w = b.build()
        out.append((replace(w, time_limit=float(limit)), float(run)))
    return out


def start_order(profile: str) -> list[str]:
    snap = World(racks({"leaf0": 4, "leaf1": 4, "leaf2": 4, "leaf3": 4})).snapshot()
    sim = Simulation(snap, build(profile))
    for w, run in workloads():
        sim.submit(w, run)
    jobs = sim.run()
    assert all(j.end is not None for j in jobs.values())
    return sorted(jobs, key=lambda n: (jobs[n].start, jobs[n].workload.seq))


GOLDEN = {
    "slurm backfill starts A C E F B D": ("slurm", list("ACEFBD")),
    "slurm builtin is strict FIFO A B C D E F": ("slurm-builtin", list("ABCDEF")),
}


@pytest.mark.parametrize("profile,want", GOLDEN.values(), ids=GOLDEN.keys())
def test_slurm_start_order_matches_real_slurm(profile: str, want: list[str]) -> None:
    assert start_order(profile) == want


def test_d_is_not_backfilled_because_it_would_delay_b() -> None:
    snap = World(racks({"leaf0": 4, "leaf1": 4, "leaf2": 4, "leaf3": 4})).snapshot()
    sim = Simulation(snap, build("slurm"))
    for w, run in workloads():
        sim.submit(w, run)
    jobs = sim.run()
    assert jobs["B"].reserved_at and jobs["B"].start is not None
    assert jobs["B"].start <= jobs["B"].reserved_at[0]  # the reservation was never delayed
    assert jobs["D"].start is not None and jobs["D"].start >= jobs["B"].end  # type: ignore[operator]
