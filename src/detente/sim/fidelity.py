"""Fidelity check against the FGD paper (Weng et al., ATC'23) on the openb trace.

The paper's experiment: pods of the openb trace arrive in a seeded random order with
no departures until the GPU demand that has arrived is 130 % of the cluster's 6,212
GPUs; a pod that fits no node is dropped. The result is the GPU allocation ratio
(GPUs allocated / capacity) when demand reaches each percentage. Its own results
file (``fgd_expected_results/analysis_allo_discrete.csv``) gives, at 130 % on the
default trace, FGD 95.4 %, BestFit 93.1 %, Random 87.5 % (mean of 10 seeds).

Here the same pods go through detente's `ClusterState` (fits, device-level fractional
GPUs) and scorers: ``Random`` (uniform over feasible nodes), ``BestFit`` (least
normalized CPU + GPU left after placement) and ``FGD``
(`detente.core.plugins.fgd.FragmentationGradient` with the trace's own pod-shape mix).
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from detente.core.cluster import Cluster
from detente.core.plugins.fgd import FragmentationGradient
from detente.core.resources import CPU, GPU, MEMORY, Resources
from detente.core.state import ClusterState
from detente.sim.clusters import openb

Pod = tuple[Resources, str]  # request, required GPU model ("" = any)


def load_pods(path: Path) -> list[Pod]:
    out = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            n, milli = int(r["num_gpu"]), int(r["gpu_milli"] or 0)
            g = milli if n == 1 and milli < 1000 else n * 1000
            req = Resources({GPU: g, CPU: int(r["cpu_milli"]), MEMORY: int(r["memory_mib"]) << 20})
            out.append((req, r.get("gpu_spec") or ""))
    return out


def _best_fit(st: ClusterState, node: int, req: Resources) -> float:
    cap = st.cluster.nodes[node].capacity
    cpu_left = (st.free_cpu[node] - req[CPU]) / max(cap[CPU], 1)
    gpu_left = (sum(st.devices[node]) - req.gpu_milli) / max(cap.gpu_milli, 1)
    return -(cpu_left + gpu_left)


def task_types(pods: list[Pod], with_cpu: bool, top: int = 24) -> list[tuple[Resources, float]]:
    """The workload's task types and their frequencies: by GPU request, or by (CPU, GPU)
    request keeping the ``top`` most frequent."""
    if not with_cpu:
        c = Counter(Resources({GPU: p[0].gpu_milli}) for p in pods if p[0].gpu_milli)
        return [(r, float(n)) for r, n in c.items()]
    c = Counter(Resources({GPU: p[0].gpu_milli, CPU: p[0][CPU]}) for p in pods if p[0].gpu_milli)
    return [(r, float(n)) for r, n in c.most_common(top)]


def run(
    policy: str, pods: list[Pod], seed: int, demand: float = 1.3, with_cpu: bool = True
) -> dict[int, float]:
    """Allocation ratio (%) at each whole percent of arrived demand, up to ``demand``."""
    cluster: Cluster = openb()
    st = ClusterState(cluster)
    cap = cluster.total_gpu_milli
    rng = random.Random(seed)
    models = [n.labels.get("gpu-model", "") for n in cluster.nodes]
    fgd = FragmentationGradient(task_types(pods, with_cpu))
    score: Callable[[int, Resources], float] = {
        "BestFit": lambda n, r: _best_fit(st, n, r),
        "FGD": lambda n, r: fgd.score(st, n, r),
        "Random": lambda n, r: rng.random(),
    }[policy]
    out, arrived, allocated, mark = {}, 0, 0, 0
    while arrived < demand * cap:
        req, model = pods[rng.randrange(len(pods))]
        arrived += req.gpu_milli
        feasible = [
            i
            for i in range(len(cluster.nodes))
            if st.fits(i, req) and (not model or models[i] in model.split("|"))
        ]
        if feasible:
            best = max(feasible, key=lambda i: (score(i, req), -i))
            st.allocate(best, req)
            allocated += req.gpu_milli
        while mark <= 130 and arrived >= mark * cap / 100:
            out[mark] = 100 * allocated / cap
            mark += 1
    return out
