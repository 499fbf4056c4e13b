"""One simulated run per profile, the same trace and cluster for each, in parallel processes.

`workloads` turns trace jobs into workloads: a job above the node size becomes a
gang of ``ceil(gpus / node GPUs)`` pods, one per node; the time limit is the run
time times ``over_estimate`` (users over-ask; 2× by default), at least a minute.
"""

from __future__ import annotations

import math
import os
import random
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
    #: Inference services and their load curves (`detente.sim.services`).
    services: str | None = None
    #: The share of training jobs that may be preempted (chosen by the seed), the grace
    #: each gets to stop, and seconds of run between its checkpoints.
    preemptible_share: float = 0.0
    checkpoint_grace: float = 30.0
    checkpoint_every: float | None = 1800.0


def workloads(
    jobs: list[traces.TraceJob], cluster: Cluster, cfg: SimConfig
) -> tuple[list[tuple[Workload, float]], int]:
    """(workload, run time) per job that the cluster could ever hold; and how many could not.
    A ``preemptible_share`` of them (drawn with the seed) is preemptible."""
    per_node = max(cluster.max_node_gpus, 1)
    out, dropped = [], 0
    coin = random.Random(cfg.seed + 104729)  # which jobs are preemptible: seeded, stable
    for seq, j in enumerate(jobs):
        pods = max(1, math.ceil(j.gpus / per_node)) if j.gpus >= 1 else 1
        if pods > len(cluster.nodes) or j.gpus > cluster.total_gpus:
            dropped += 1
            continue
        gpus = j.gpus / pods if j.gpus < 1 else math.ceil(j.gpus / pods)
        req = Resources({GPU: round(gpus * 1000), CPU: j.cpu_milli, MEMORY: j.memory})
        ps = PodSet("main", pods, req, one_per_node=pods > 1)
        limit = max(60.0, j.duration * cfg.over_estimate)
        preemptible = coin.random() < cfg.preemptible_share
        w = Workload(
            j.name, f"default/{j.queue}", (ps,), seq=seq, submit_time=j.submit / cfg.load_scale,
            time_limit=limit, preemptible=preemptible,
            checkpoint_grace=cfg.checkpoint_grace if preemptible else 0.0,
        )  # fmt: skip
        out.append((w, j.duration))
    return out, dropped


def services_of(
    cfg: SimConfig, jobs: list[traces.TraceJob] | None = None
) -> list[tuple[services.Service, services.Load]]:
    """The configured services with their load curves, tiled over the span in which
    the training trace submits (past it only the long tail of training drains)."""
    if not cfg.services:
        return []
    if jobs is None:
        jobs = traces.load(cfg.trace, cfg.trace_format, cfg.seed, cfg.limit)
    span = max((j.submit / cfg.load_scale for j in jobs), default=0.0) or 86400.0
    return services.parse_spec(cfg.services, span)


@dataclass(frozen=True, slots=True)
class Part:
    """Which part of the workload one run carries, and on which cluster: the whole
    (one pool), or training alone / services alone (the two clusters of a split)."""

    cluster: str | None = None  # None: the config's
    training: bool = True
    services: bool = True


def simulate(
    profile: str, cfg: SimConfig, progress: Callable[[int], None] | None = None,
    part: Part = Part(),
) -> dict[str, Any]:  # fmt: skip
    t0 = time.perf_counter()
    jobs = traces.load(cfg.trace, cfg.trace_format, cfg.seed, cfg.limit)
    sc = clusters.build(part.cluster or cfg.cluster)
    svcs = services_of(cfg, jobs) if part.services else []
    jobs = jobs if part.training else []
    shares = None
    if cfg.vc_quotas:
        total = sum(j.gpus * j.duration for j in jobs) or 1.0
        shares = {}
        for j in jobs:
            shares[j.queue] = shares.get(j.queue, 0.0) + j.gpus * j.duration / total
    names = [j.queue for j in jobs] + ([services.QUEUE] if svcs else [])
    if shares is not None and svcs:
        shares[services.QUEUE] = 0.0  # the minimum quota: one GPU
    config = sc.config or clusters.queues_for(sc.cluster, names, shares)
    work, dropped = workloads(jobs, sc.cluster, cfg)
    prof = build_profile(profile, cfg.seed)
    fails = Failures(cfg.mtbf_hours * 3600) if cfg.mtbf_hours else None
    sim = Simulation(Snapshot(sc.cluster, config), prof, cfg.seed, failures=fails,
                     checkpoint_every=cfg.checkpoint_every)  # fmt: skip
    for w, run in work:
        sim.submit(w, run)
    for svc, load in svcs:
        sim.add_service(svc, load)
    records = sim.run(progress=progress)
    wall = time.perf_counter() - t0
    m = metrics.compute(records, sim.samples, sc.cluster)
    m.update(metrics.services(records, list(sim.services.values())))
    m.update(
        {
            "gpus": sc.cluster.total_gpus,
            "dropped": dropped,
            "cycles": sim.cycles,
            "wall_seconds": wall,
            "jobs_per_s": len(work) / wall if wall > 0 else 0.0,
        }
    )
    series = {
        "samples": [asdict(s) for s in sim.samples],
        "jct": sorted(
            r.end - r.workload.submit_time
            for r in records.values()
            if r.end is not None and not r.service
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
