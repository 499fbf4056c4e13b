"""PrioritySort: higher priority first, then earlier submission, then sequence.

Kube-scheduler's and Kueue's default order; Slurm's order when all multifactor
weights but the priority class are zero.
"""

from __future__ import annotations

from collections.abc import Hashable

from detente.core.framework import QueueSort
from detente.core.workload import Workload


class PrioritySort:
    name = "PrioritySort"

    def sort_key(self, w: Workload) -> tuple[Hashable, ...]:
        return (-w.priority, w.submit_time, w.seq)


class FifoSort:
    """Submission order only (Slurm with every priority weight 0)."""

    name = "FifoSort"

    def sort_key(self, w: Workload) -> tuple[Hashable, ...]:
        return (w.submit_time, w.seq)


_: QueueSort = PrioritySort()
__: QueueSort = FifoSort()
