"""One simulated run per profile, the same trace and cluster for each, in parallel processes.

`workloads` turns trace jobs into workloads: a job above the node size becomes a
gang of ``ceil(gpus / node GPUs)`` pods, one per node; the time limit is the run
time times ``over_estimate`` (users over-ask; 2× by default), at least a minute.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import Manager
from typing import Any

from detente.api.profiles import load as build_profile
from detente.core.cluster import Cluster
from detente.core.resources import CPU, GPU, MEMORY, Resources
from detente.core.snapshot import Snapshot
from detente.core.workload import PodSet, Workload
from detente.sim import clusters, metrics, services, traces
from detente.sim.driver import Failures, Simulation


@dataclass(frozen=True, slots=True)
class SimConfig:
    trace: str = "philly-sample"
    trace_format: str | None = None
    cluster: str = "16x8"
    seed: int = 0
    limit: int | None = None
    load_scale: float = 1.0
    over_estimate: float = 2.0
    mtbf_hours: float | None = None
    #: Split the GPUs into one ClusterQueue per trace queue (VC) by its share of GPU-time.
    vc_quotas: bool = False
    #: An inference service's load curve: ``diurnal[:PEAK]`` or an Azure request trace.
    services: str | None = None


def workloads(
    jobs: list[traces.TraceJob], cluster: Cluster, cfg: SimConfig
) -> tuple[list[tuple[Workload, float]], int]:
    """(workload, run time) per job that the cluster could ever hold; and how many could not."""
    per_node = max(cluster.max_node_gpus, 1)
    out, dropped = [], 0
    for seq, j in enumerate(jobs):
        pods = max(1, math.ceil(j.gpus / per_node)) if j.gpus >= 1 else 1
        if pods > len(cluster.nodes) or j.gpus > cluster.total_gpus:
            dropped += 1
            continue
        gpus = j.gpus / pods if j.gpus < 1 else math.ceil(j.gpus / pods)
        req = Resources({GPU: round(gpus * 1000), CPU: j.cpu_milli, MEMORY: j.memory})
        ps = PodSet("main", pods, req, one_per_node=pods > 1)
        limit = max(60.0, j.duration * cfg.over_estimate)
        w = Workload(
            j.name, f"default/{j.queue}", (ps,), seq=seq, submit_time=j.submit / cfg.load_scale,
            time_limit=limit,
        )  # fmt: skip
        out.append((w, j.duration))
    return out, dropped


def simulate(
    profile: str, cfg: SimConfig, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    jobs = traces.load(cfg.trace, cfg.trace_format, cfg.seed, cfg.limit)
    sc = clusters.build(cfg.cluster)
    shares = None
    if cfg.vc_quotas:
        total = sum(j.gpus * j.duration for j in jobs) or 1.0
        shares = {}
        for j in jobs:
            shares[j.queue] = shares.get(j.queue, 0.0) + j.gpus * j.duration / total
    names = [j.queue for j in jobs] + ([services.QUEUE] if cfg.services else [])
    if shares is not None and cfg.services:
        shares[services.QUEUE] = 0.0  # the minimum quota: one GPU
    config = sc.config or clusters.queues_for(sc.cluster, names, shares)
    work, dropped = workloads(jobs, sc.cluster, cfg)
    prof = build_profile(profile, cfg.seed)
    fails = Failures(cfg.mtbf_hours * 3600) if cfg.mtbf_hours else None
    sim = Simulation(Snapshot(sc.cluster, config), prof, cfg.seed, failures=fails)
    for w, run in work:
        sim.submit(w, run)
    if cfg.services:
        span = max((w.submit_time + run for w, run in work), default=86400.0)
        sim.add_service(*services.parse_spec(cfg.services, span))
    records = sim.run(progress=progress)
    wall = time.perf_counter() - t0
    m = metrics.compute(records, sim.samples, sc.cluster)
    m.update(metrics.services(records, list(sim.services.values())))
    m.update(
        {
            "dropped": dropped,
            "cycles": sim.cycles,
            "wall_seconds": wall,
            "jobs_per_s": len(work) / wall,
        }
    )
    series = {
        "samples": [asdict(s) for s in sim.samples],
        "jct": sorted(
            r.end - r.workload.submit_time for r in records.values() if r.end is not None
        ),
    }
    return {"profile": profile, "metrics": m, "series": series}


def _worker(profile: str, cfg: SimConfig, queue: Any) -> dict[str, Any]:
    step = [0]

    def report(done: int) -> None:
        if done - step[0] >= 50:
            step[0] = done
            queue.put((profile, done))

    out = simulate(profile, cfg, report)
    queue.put((profile, -1))
    return out


def simulate_all(
    profiles: list[str],
    cfg: SimConfig,
    on_progress: Callable[[str, int], None] | None = None,
    workers: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Runs every profile; in parallel processes when there are cores for it."""
    n = workers or min(len(profiles), os.cpu_count() or 1)
    if n <= 1:
        return {
            p: simulate(p, cfg, (lambda d, p=p: on_progress(p, d)) if on_progress else None)
            for p in profiles
        }
    with Manager() as mgr, ProcessPoolExecutor(max_workers=n) as pool:
        q = mgr.Queue()
        futures = {p: pool.submit(_worker, p, cfg, q) for p in profiles}
        remaining = set(profiles)
        while remaining:
            name, done = q.get()
            if done < 0:
                remaining.discard(name)
            elif on_progress:
                on_progress(name, done)
        return {p: f.result() for p, f in futures.items()}
