"""PostFilter plugins: what a cycle does for a workload that does not fit.

* `QueuePreemption`: Kueue's preemption within the ClusterQueue and reclaim within
  the cohort, as each ClusterQueue's policy (or the profile's default) says
  (`detente.core.preemption`).
* `NoPreemption`: nothing (Slurm's preempt/none, Volcano without preempt/reclaim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from detente.core.framework import Preempting, Rng
from detente.core.preemption import Preemption, Preemptor
from detente.core.queues import ClusterQueue
from detente.core.snapshot import Snapshot
from detente.core.status import Status, unschedulable
from detente.core.workload import Workload

if TYPE_CHECKING:
    from detente.core.profiles import Profile


@dataclass(frozen=True, slots=True)
class QueuePreemption:
    #: Preemption attempts per cycle (each copies part of the snapshot).
    budget: int = 16
    name: str = "QueuePreemption"

    def start(self, snap: Snapshot, profile: Profile) -> Preempting:
        return Preemptor(snap, profile, self.budget)


class _Never:
    def worth_trying(self, w: Workload, cq: ClusterQueue) -> bool:
        return False

    def run(
        self, w: Workload, cq: ClusterQueue, rng: Rng, now: float
    ) -> tuple[Status, list[Preemption]]:
        return unschedulable("NoPreemption", "the profile does not preempt"), []


@dataclass(frozen=True, slots=True)
class NoPreemption:
    name: str = "NoPreemption"

    def start(self, snap: Snapshot, profile: Profile) -> Preempting:
        return _Never()
