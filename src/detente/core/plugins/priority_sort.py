"""PrioritySort: higher priority first, then earlier submission, then sequence.

Kube-scheduler's and Kueue's default order; Slurm's order when all multifactor
weights but the priority class are zero.
"""

from __future__ import annotations

from collections.abc import Hashable

from detente.core.framework import PriorityContext, QueueSort
from detente.core.workload import Workload


class PrioritySort:
    name = "PrioritySort"

    def sort_key(self, w: Workload, ctx: PriorityContext) -> tuple[Hashable, ...]:
        return (-w.priority, w.submit_time, w.seq)

    def explain(self, w: Workload, ctx: PriorityContext) -> dict[str, float]:
        return {"priority_class": float(w.priority)}


class FifoSort:
    """Submission order only (Slurm with every priority weight 0)."""

    name = "FifoSort"

    def sort_key(self, w: Workload, ctx: PriorityContext) -> tuple[Hashable, ...]:
        return (w.submit_time, w.seq)

    def explain(self, w: Workload, ctx: PriorityContext) -> dict[str, float]:
        return {}


class DrfSort:
    """Volcano's order: the LocalQueue with the lowest dominant allocation share first
    (drf / proportion), then priority, then submission."""

    name = "DrfSort"

    def sort_key(self, w: Workload, ctx: PriorityContext) -> tuple[Hashable, ...]:
        share = round(ctx.allocation_share.get(w.queue, 0.0), 9)
        return (share, -w.priority, w.submit_time, w.seq)

    def explain(self, w: Workload, ctx: PriorityContext) -> dict[str, float]:
        return {"queue_share": ctx.allocation_share.get(w.queue, 0.0), "priority_class": w.priority}


_: QueueSort = PrioritySort()
__: QueueSort = FifoSort()
___: QueueSort = DrfSort()
