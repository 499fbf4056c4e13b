"""QuotaFit plugins: which ClusterQueue a workload charges.

* `CohortQuota`: Kueue's ClusterQueues with cohorts; with ``borrowing`` a queue may use
  unused nominal quota of its cohort up to its borrowing limit (Kueue, Volcano's
  capability), without it nominal quota is a hard cap (Slurm partitions).
* `NoQuota`: queues are ignored, as in the plain Kubernetes scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

from detente.core.queues import ClusterQueue
from detente.core.snapshot import Snapshot, quota_charge
from detente.core.status import Status, unresolvable
from detente.core.workload import Workload


@dataclass(frozen=True, slots=True)
class CohortQuota:
    borrowing: bool = True
    name: str = "CohortQuota"
    charges: bool = True

    def resolve(self, snap: Snapshot, w: Workload) -> tuple[ClusterQueue | None, Status | None]:
        cq = snap.config.cluster_queue_of(w.queue)
        if cq is None:
            return None, unresolvable("QueueResolver", f"LocalQueue {w.queue!r} does not exist")
        return cq, None

    def would_borrow(self, snap: Snapshot, w: Workload) -> bool:
        if not self.borrowing:
            return False
        cq = snap.config.cluster_queue_of(w.queue)
        if cq is None or cq.cohort is None:
            return False
        flavors = snap.first_flavors(cq, w)
        return flavors is not None and snap.quota.borrowing(cq.name, quota_charge(w, flavors))


@dataclass(frozen=True, slots=True)
class NoQuota:
    name: str = "NoQuota"
    charges: bool = False
    borrowing: bool = False

    def resolve(self, snap: Snapshot, w: Workload) -> tuple[ClusterQueue | None, Status | None]:
        return None, None

    def would_borrow(self, snap: Snapshot, w: Workload) -> bool:
        return False
