"""Multifactor priority (Slurm's priority/multifactor): a weighted sum of named factors.

``priority = Σ weight_f × factor_f``, every factor in [0, 1]:

* ``age``: time waiting / ``max_age`` (7 days), capped at 1;
* ``size``: (nodes / cluster nodes + GPUs / cluster GPUs) / 2 — large jobs first, as
  Slurm's default; ``favor_small`` inverts it;
* ``fairshare``: the workload's LocalQueue's decayed fair-share factor;
* ``qos``: its priority class value / the largest class value (Slurm's QOS factor);
* ``work``: small requested work first — ``1 − log10(1 + GPU-hours asked) / 4``, from
  GPUs × time limit (1 for nothing, 0 from 10,000 GPU-hours). Like Slurm's
  ``PriorityFavorSmall`` with ``SMALL_RELATIVE_TO_TIME``, it approximates shortest job
  first from what users declare.

`explain` gives each weighted term, as ``sprio`` prints them. Weights of 0 leave
the order to submit time and sequence (Slurm's defaults).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

from detente.core import fairshare
from detente.core.framework import PriorityContext, QueueSort
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Weights:
    age: float = 0.0
    size: float = 0.0
    fairshare: float = 0.0
    qos: float = 0.0
    work: float = 0.0
    max_age: float = 7 * DAY
    favor_small: bool = False


class MultifactorSort:
    name = "Multifactor"

    def __init__(self, weights: Weights = Weights()) -> None:
        self.weights = weights

    def factors(self, w: Workload, ctx: PriorityContext) -> dict[str, float]:
        wt = self.weights
        age = min(max(ctx.now - w.submit_time, 0.0) / wt.max_age, 1.0) if wt.max_age else 0.0
        nodes = sum(ps.count if ps.one_per_node else 1 for ps in w.pod_sets)
        size = (nodes / max(ctx.total_nodes, 1) + w.gpus / max(ctx.total_gpus, 1e-9)) / 2
        size = min(size, 1.0)
        top = ctx.max_class_value
        hours = w.gpus * (w.time_limit or wt.max_age) / 3600
        return {
            "age": age,
            "size": 1.0 - size if wt.favor_small else size,
            "fairshare": ctx.fairshare.get(w.queue, 1.0),
            # A class above the last known top (it arrived since) counts as the top.
            "qos": min(max(w.priority, 0) / top, 1.0) if top > 0 else float(w.priority > 0),
            "work": max(0.0, 1.0 - math.log10(1 + hours) / 4),
        }

    def explain(self, w: Workload, ctx: PriorityContext) -> dict[str, float]:
        wt = self.weights
        f = self.factors(w, ctx)
        terms = {
            "age": wt.age * f["age"],
            "size": wt.size * f["size"],
            "fairshare": wt.fairshare * f["fairshare"],
            "qos": wt.qos * f["qos"],
        }
        if wt.work:
            terms["work"] = wt.work * f["work"]
        return terms

    def sort_key(self, w: Workload, ctx: PriorityContext) -> tuple[Hashable, ...]:
        return (-round(sum(self.explain(w, ctx).values()), 6), w.submit_time, w.seq)


_: QueueSort = MultifactorSort()


def priority_context(snap: Snapshot, now: float, pending: int = 0) -> PriorityContext:
    """Factors' inputs from the snapshot: cluster size, class values, fair share, allocation.

    ``pending``: the largest priority among pending workloads, so priorities set without
    a WorkloadPriorityClass still normalize."""
    cl = snap.cluster
    cfg = snap.config
    weights = {lq.key: lq.weight for lq in cfg.local_queues.values()}
    capacity = cl.capacity
    alloc: dict[str, dict[str, float]] = {}
    for adm in snap.running.values():
        q = alloc.setdefault(adm.workload.queue, {})
        for r, v in adm.workload.total.items():
            q[r] = q.get(r, 0.0) + v
    share = {
        q: max((v / capacity[r] for r, v in u.items() if capacity[r]), default=0.0)
        for q, u in alloc.items()
    }
    return PriorityContext(
        now=now,
        total_nodes=len(cl.nodes),
        total_gpus=cl.total_gpus or 1,
        max_class_value=max(
            [pending, *(p.value for p in cfg.priority_classes.values())]
            + [a.workload.priority for a in snap.running.values()]
        ),
        fairshare=fairshare.factors(snap.usage, weights, capacity),
        allocation_share=share,
    )


def reprioritize(snap: Snapshot, queues: QueueManager, half_life: float, now: float) -> None:
    """Accrues decayed usage up to ``now`` and recomputes every pending priority.

    Callers run it every PriorityCalcPeriod (Slurm: 5 min) and before planning.
    Changes ``snap.usage`` and the queue order; nothing else.
    """
    snap.usage = fairshare.accrue(snap.usage, snap.running.values(), now, half_life)
    top = max((w.priority for w in queues.workloads()), default=0)
    queues.resort(priority_context(snap, now, top))
