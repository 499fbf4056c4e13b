"""Admission-cycle benchmark: admissions/s, cycle latency, peak RSS. Prints JSON.

Scenario ``large`` (issue "Scheduling core I"): 1,000 nodes × 8 GPUs in 4 blocks ×
8 racks, 10,000 pending gang jobs whose GPU counts are drawn from the Philly trace
(``../shared/traces/philly_pollux/philly.csv``; jobs above 8 GPUs become gangs of
8-GPU pods, one per node, preferring one rack). Cycles run until every job has been
admitted; between cycles (60 s of simulated time apart) a seeded 1 % of running
jobs finish. Time limits are twice the Philly run time (users over-ask). Only
scheduler work is timed: snapshot clone + ``run_cycle``, and every 300 s the
fair-share accrual and priority recomputation. The
first cycle fills the empty cluster; "steady" figures cover the cycles after it,
where each admits what the finished 1 % freed.

Scenario ``huge``: 10,000 nodes (4 blocks × 80 racks, so racks keep ~31 nodes as in
``large``) × 100,000 pending; three cycles; peak RSS.

Each scenario runs in its own process so peak RSS is its own. For comparison,
Kueue's own performance baseline admits about 43 workloads/s (see the README).

    python bench/cycle_bench.py [--scenario large|huge|all] [--profile detente,k8s]
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import random
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from detente.core.cluster import Cluster, Node
from detente.core.cycle import run_cycle
from detente.core.priority import reprioritize
from detente.core.profiles import build
from detente.core.queue_manager import QueueManager
from detente.core.queues import ClusterQueue, LocalQueue, QueueConfig, ResourceFlavor, ResourceGroup
from detente.core.quota import Quota
from detente.core.resources import CPU, GPU, MEMORY, Resources
from detente.core.snapshot import Snapshot
from detente.core.workload import PodSet, TopologyMode, TopologyRequest, Workload

BLOCK, RACK = "topology.detente.dev/block", "topology.detente.dev/rack"
PHILLY = Path(__file__).resolve().parents[2] / "shared" / "traces" / "philly_pollux" / "philly.csv"
KUEUE_BASELINE_PER_S = 43.0


def philly_jobs() -> tuple[list[tuple[int, float]], str]:
    """(GPUs, duration s) of the Philly jobs, or a histogram of GPU counts from the trace
    README with its median duration (1,144 s) when the trace folder is absent."""
    if PHILLY.exists():
        with PHILLY.open() as f:
            rows = [(int(r["num_gpus"]), float(r["duration"])) for r in csv.DictReader(f)]
        return rows, str(PHILLY)
    hist = {1: 76627, 2: 1818, 4: 1870, 8: 1643, 16: 199, 32: 67, 64: 6, 128: 3, 12: 7, 24: 7}
    return [(g, 1144.0) for g, n in hist.items() for _ in range(n)], "histogram (no trace)"


def cluster(nodes: int, blocks: int = 4, racks_per_block: int = 8) -> Cluster:
    per_block = nodes // blocks
    cap = Resources({GPU: 8000, CPU: 96_000, MEMORY: 1 << 40})
    out = []
    for i in range(nodes):
        b = min(i // per_block, blocks - 1)
        r = b * racks_per_block + (i - b * per_block) * racks_per_block // per_block
        labels = MappingProxyType({BLOCK: f"b{b}", RACK: f"r{r}"})
        out.append(Node(f"n{i:05d}", cap, labels))
    return Cluster(out, (BLOCK, RACK))


def jobs(n: int, seed: int) -> list[Workload]:
    sample, _ = philly_jobs()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        g, duration = rng.choice(sample)
        pods = max(1, -(-g // 8))
        per = g // pods
        req = Resources({GPU: per * 1000, CPU: 4000 * per, MEMORY: (32 << 30) * per})
        ps = PodSet("main", pods, req, one_per_node=pods > 1)
        topo = TopologyRequest(TopologyMode.PREFERRED, RACK) if pods > 1 else None
        limit = max(60.0, 2 * duration)  # users over-ask: twice the real run time
        w = Workload(f"j{i}", "default/q", (ps,), seq=i, submit_time=i * 0.01, topology=topo)
        out.append(replace(w, time_limit=limit))
    return out


def queues() -> QueueConfig:
    big = Quota(1 << 60)
    cq = ClusterQueue(
        "cq",
        (ResourceGroup((GPU, CPU, MEMORY), ("f",)),),
        {("f", GPU): big, ("f", CPU): big, ("f", MEMORY): big},
    )
    return QueueConfig(
        flavors=[ResourceFlavor("f")], cluster_queues=[cq], local_queues=[LocalQueue("q", "cq")]
    )


def run(
    profile_name: str,
    nodes: int,
    pending: int,
    max_cycles: int,
    racks_per_block: int,
    seed: int = 1,
) -> dict[str, object]:
    prof = build(profile_name, seed)
    cache = Snapshot(cluster(nodes, 4, racks_per_block), queues())
    qm = QueueManager(prof.queue_sort, jobs(pending, seed))
    rng, finish = random.Random(seed), random.Random(seed + 1)
    lat: list[float] = []
    per_cycle: list[int] = []
    admitted, now = 0, 0.0
    last_prio: float | None = None
    for _ in range(max_cycles):
        t0 = time.perf_counter()
        if last_prio is None or now - last_prio >= prof.calc_period:
            reprioritize(cache, qm, prof.half_life, now)  # fair share on, every calc period
            last_prio = now
        snap = cache.clone()
        res = run_cycle(snap, qm, prof, now, rng)
        lat.append(time.perf_counter() - t0)
        cache = snap  # assume: the cycle's snapshot becomes the cache
        per_cycle.append(0)
        for adm in res.admissions:
            if adm.complete:
                qm.remove(adm.workload.name)
                admitted += 1
                per_cycle[-1] += 1
        if not len(qm):
            break
        running = sorted(cache.running)
        for name in finish.sample(running, max(1, len(running) // 100)) if running else []:
            cache.release(name)
        now += 60
    total = sum(lat)
    lat_ms = sorted(x * 1000 for x in lat)
    steady = sum(lat[1:]) or 1e-9
    return {
        "profile": profile_name,
        "nodes": nodes,
        "racks": 4 * racks_per_block,
        "gpus": nodes * 8,
        "pending": pending,
        "cycles": len(lat),
        "admissions": admitted,
        "admissions_per_s": round(admitted / total, 1),
        "first_cycle_admissions": per_cycle[0],
        "first_cycle_ms": round(lat[0] * 1000, 1),
        "steady_admissions_per_s": round((admitted - per_cycle[0]) / steady, 1),
        "vs_kueue_baseline": round(admitted / total / KUEUE_BASELINE_PER_S, 1),
        "cycle_ms_p50": round(statistics.median(lat_ms), 2),
        "cycle_ms_p99": round(lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))], 2),
        "cycle_seconds_total": round(total, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(args: tuple[str, int, int, int, int], out: mp.Queue) -> None:  # type: ignore[type-arg]
    out.put(run(*args))


def isolated(*args: object) -> dict[str, object]:
    """Runs one scenario in a fresh process so its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(args, q))
    p.start()
    result = q.get()
    p.join()
    return result  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="all", choices=["large", "huge", "all"])
    ap.add_argument("--profile", default="detente")
    args = ap.parse_args()
    results = []
    for prof in args.profile.split(","):
        if args.scenario in ("large", "all"):
            results.append({"scenario": "large", **isolated(prof, 1000, 10_000, 100_000, 8)})
        if args.scenario in ("huge", "all"):
            results.append({"scenario": "huge", **isolated(prof, 10_000, 100_000, 3, 80)})
    print(
        json.dumps(
            {"trace": philly_jobs()[1], "python": sys.version.split()[0], "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
