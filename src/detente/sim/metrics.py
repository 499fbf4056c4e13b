"""Metrics of one simulated run, from job records and samples. Seconds; ratios in 0–1.

* JCT = end − submit; queueing delay = first start − submit; normalized JCT = JCT /
  the zero-wait lower bound (its own run time, capped by its time limit).
* GPU utilization: time-weighted GPUs of *running* workloads (every pod placed) over
  capacity; allocation ratio: GPUs held by any pod, including pods of half-placed
  jobs that cannot run (the pod-by-pod deadlock shows as allocation without use).
* Fragmentation: free GPUs on partly used nodes, time-weighted mean.
* Jain fairness over queues (VCs) of x_q = 1 / mean slowdown of the queue's jobs.
* Gangs in one rack: multi-node jobs whose nodes share the deepest topology domain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from detente.core.cluster import Cluster
from detente.sim.driver import JobRecord, Sample, ServiceState


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else 0.0


def _time_weighted(samples: Sequence[Sample], attr: str, end: float) -> float:
    if not samples:
        return 0.0
    t = np.array([s.time for s in samples] + [end])
    v = np.array([getattr(s, attr) for s in samples])
    dt = np.diff(t)
    total = float(dt.sum())
    return float((v * dt).sum() / total) if total > 0 else float(v.mean())


def _jain(values: Sequence[float]) -> float:
    x = np.array([v for v in values if v > 0])
    return float(x.sum() ** 2 / (len(x) * (x**2).sum())) if x.size else 1.0


def _one_domain(cluster: Cluster, nodes: list[int]) -> bool:
    if not cluster.levels:
        return True
    return len({cluster.node_domains[n][-1] for n in nodes}) == 1


def _needed_and_served(st: ServiceState) -> tuple[float, float]:
    """Replica-seconds the load needed (at full throughput) and those ready to serve
    them, over the load curve: both piecewise constant between change points."""
    events = sorted([(t, 0, v) for t, v in st.loads] + [(t, 1, float(n)) for t, n in st.ready])
    end = st.loads[-1][0] if st.loads else 0.0
    load, ready, last = 0.0, 0.0, None
    needed = served = 0.0
    for t, kind, v in events:
        t = min(t, end)
        if last is not None and t > last:
            n = st.service.needed(load)
            needed += n * (t - last)
            served += min(n, ready) * (t - last)
        last = t
        load, ready = (v, ready) if kind == 0 else (load, v)
    return needed, served


def services(jobs: dict[str, JobRecord], states: Sequence[ServiceState]) -> dict[str, float]:
    """Service figures: availability = replica-seconds ready to serve / replica-seconds
    the load needed (``ceil(load / throughput)``, counted while the load curve runs);
    scale-up wait = a replica's first start − its creation, over replicas that started."""
    if not states:
        return {}
    needed = served = 0.0
    for st in states:
        n, sv = _needed_and_served(st)
        needed, served = needed + n, served + sv
    reps = [j for j in jobs.values() if j.service]
    waits = np.array(
        [j.first_start - j.workload.submit_time for j in reps if j.first_start is not None]
    )
    return {
        "svc_availability": served / needed if needed > 0 else 1.0,
        "svc_wait_p50": _pct(waits, 50),
        "svc_wait_p99": _pct(waits, 99),
        "svc_replicas_max": max((d for st in states for _, d in st.desired), default=0),
        "svc_preemptions": sum(len(j.preempted_at) for j in reps),
        "svc_gpu_hours": sum(j.served * j.workload.gpus for j in reps) / 3600,
    }


def compute(
    jobs: dict[str, JobRecord], samples: Sequence[Sample], cluster: Cluster
) -> dict[str, float | int]:
    """Batch-job figures; service replicas are left out (see `services`)."""
    jobs = {n: j for n, j in jobs.items() if not j.service}
    done = [j for j in jobs.values() if j.end is not None]
    submit = np.array([j.workload.submit_time for j in done])
    end = np.array([j.end for j in done], dtype=float)
    first = np.array([j.first_start for j in done], dtype=float)
    ideal = np.array([max(min(j.runtime, j.workload.time_limit or j.runtime), 1.0) for j in done])
    jct, wait = end - submit, first - submit
    makespan = (
        float(end.max() - min(j.workload.submit_time for j in jobs.values())) if done else 0.0
    )
    t_end = float(end.max()) if done else 0.0
    slow: dict[str, list[float]] = defaultdict(list)
    for j, s in zip(done, jct / ideal if done else [], strict=False):
        slow[j.workload.queue].append(float(s))
    gangs = [j for j in done if len(set(j.nodes)) > 1]
    cap = max(cluster.total_gpus, 1)
    return {
        "jobs": len(jobs),
        "finished": len(done),
        "unfinished": len(jobs) - len(done),
        "timeouts": sum(1 for j in done if j.timed_out),
        "jct_avg": float(jct.mean()) if done else 0.0,
        "jct_p50": _pct(jct, 50),
        "jct_p99": _pct(jct, 99),
        "jct_norm_avg": float((jct / ideal).mean()) if done else 0.0,
        "wait_avg": float(wait.mean()) if done else 0.0,
        "wait_p50": _pct(wait, 50),
        "wait_p99": _pct(wait, 99),
        "makespan": makespan,
        "gpu_util": _time_weighted(samples, "running_gpus", t_end) / cap,
        "alloc_ratio": _time_weighted(samples, "allocated_gpus", t_end) / cap,
        "frag_gpus_avg": _time_weighted(samples, "fragmented_gpus", t_end),
        "jain_fairness": _jain([1 / float(np.mean(v)) for v in slow.values() if v]),
        "preemptions": sum(len(j.preempted_at) for j in jobs.values()),
        "gpu_hours_lost": sum(j.lost_gpu_seconds for j in jobs.values()) / 3600,
        "gangs": len(gangs),
        "gangs_in_one_rack": sum(1 for j in gangs if _one_domain(cluster, j.nodes)) / len(gangs)
        if gangs
        else 1.0,
    }
