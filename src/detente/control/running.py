"""The running jobs' snapshot, kept between decisions and patched with what changed
(issue 11: an incremental snapshot, not a rebuild).

Each decision used to charge every active job to a fresh `Snapshot` (≈ 10 ms at 927
running jobs, every decision). Here a base snapshot holds the active jobs as last
seen; a decision releases the jobs that ended or changed (every write of a job row
bumps its version), admits the new and changed ones, and decides on a clone. The
clone shares the base's admission objects: a cycle never changes a running admission
in place (a victim's eviction mark is a new admission: `detente.core.preemption`), so
nothing a decision marks reaches the base. The base is built again whenever the cluster or the queue
configuration is new, or a job's workload is a new object (its priority is set on
that object).

Contract: `snapshot` returns what charging every active job to a fresh `Snapshot`
would (`tests/test_cache.py` compares placements, node state and quota usage with a
fresh load after random sequences of events).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detente.control.store.models import ACTIVE
from detente.core.cluster import Cluster
from detente.core.queues import QueueConfig
from detente.core.snapshot import Snapshot
from detente.core.workload import Admission, Workload

#: How a job becomes an admission on a snapshot (`workloads._admission`).
Admit = Callable[[Any, Snapshot, Workload], Admission]


class RunningSnapshot:
    def __init__(self) -> None:
        self._base: Snapshot | None = None
        self._seen: dict[int, int] = {}  # job id → version charged in the base

    def reset(self) -> None:
        self._base, self._seen = None, {}

    def snapshot(
        self, cl: Cluster, config: QueueConfig, jobs: dict[int, Any],
        workload: Callable[[Any], Workload], admission: Admit,
    ) -> Snapshot:  # fmt: skip
        """A fresh snapshot with the active jobs among ``jobs`` charged (each through
        ``admission(job, snapshot, workload(job))``), the base patched first."""
        base = self._base
        if base is None or base.cluster is not cl or base.config is not config:
            base, self._seen = Snapshot(cl, config), {}
            self._base = base
        active = {i: j for i, j in jobs.items() if j.state in ACTIVE and j.nodes}
        for jid in list(self._seen):
            job = active.get(jid)
            adm = base.running.get(str(jid))
            if (job is None or job.version != self._seen[jid] or adm is None
                    or adm.workload is not workload(job)):  # fmt: skip
                if adm is not None:
                    base.release(str(jid))
                del self._seen[jid]
        for jid, job in active.items():
            if jid not in self._seen:
                base.admit(admission(job, base, workload(job)), keep_devices=True)
                self._seen[jid] = job.version
        return base.clone()  # its admissions shared: a cycle replaces, never changes, one
