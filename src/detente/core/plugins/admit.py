"""Admit plugins: how a cycle admits a workload now, and what it does for one that
cannot start.

* `PlaceNow`: quota, then placement; what fits now starts now, nothing is reserved
  (Kueue with TAS, Volcano, Slurm's sched/builtin).
* `SlurmBackfill`: Slurm's sched/backfill — start now only around the reservations;
  a blocked workload gets one at its earliest start (`detente.core.backfill`).
* `QuotaThenBind`: Kueue without TAS — admit on quota alone; at the cycle's end
  kube-scheduler's pod-by-pod binding places the admitted pods.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from detente.core.admission import ShapeCache, reserve_quota, try_admit
from detente.core.backfill import Backfill
from detente.core.framework import AdmitCycle, Rng
from detente.core.podcycle import bind_pods
from detente.core.queue_manager import QueueManager
from detente.core.queues import ClusterQueue
from detente.core.snapshot import Snapshot
from detente.core.status import Status
from detente.core.workload import Admission, Workload

if TYPE_CHECKING:
    from detente.core.cycle import CycleResult
    from detente.core.profiles import Profile


class BackfillMode(StrEnum):
    #: Reserve for the first ``reserve_limit`` blocked workloads only (EASY).
    EASY = "easy"
    #: Reserve for every blocked workload tested (Slurm's default).
    CONSERVATIVE = "conservative"


@dataclass(slots=True)
class _PlaceNowCycle:
    snap: Snapshot
    profile: Profile
    now: float
    failed: ShapeCache

    def may_skip_when_full(self) -> bool:
        return True

    def admit_now(
        self, w: Workload, cq: ClusterQueue | None, rng: Rng
    ) -> tuple[Status, Admission | None]:
        return try_admit(self.snap, w, cq, self.profile, self.failed, rng, self.now)

    def blocked(self, w: Workload, cq: ClusterQueue | None, rng: Rng, why: Status) -> Status:
        return why

    def finish(self, queues: QueueManager, rng: Rng, res: CycleResult) -> None:
        return None


@dataclass(frozen=True, slots=True)
class PlaceNow:
    name: str = "PlaceNow"

    def start(
        self, snap: Snapshot, queues: QueueManager, profile: Profile, now: float
    ) -> AdmitCycle:
        return _PlaceNowCycle(snap, profile, now, ShapeCache())


@dataclass(slots=True)
class _QuotaThenBindCycle(_PlaceNowCycle):
    def may_skip_when_full(self) -> bool:
        return False  # quota decides, not free GPUs

    def admit_now(
        self, w: Workload, cq: ClusterQueue | None, rng: Rng
    ) -> tuple[Status, Admission | None]:
        return reserve_quota(self.snap, w, cq, self.now)

    def finish(self, queues: QueueManager, rng: Rng, res: CycleResult) -> None:
        snap = self.snap
        reserved = [
            w
            for w in queues.ordered()
            if (a := snap.running.get(w.name)) is not None and not a.complete
        ]
        bind_pods(snap, reserved, queues, self.profile, self.now, rng, res)


@dataclass(frozen=True, slots=True)
class QuotaThenBind:
    name: str = "QuotaThenBind"

    def start(
        self, snap: Snapshot, queues: QueueManager, profile: Profile, now: float
    ) -> AdmitCycle:
        return _QuotaThenBindCycle(snap, profile, now, ShapeCache())


@dataclass(frozen=True, slots=True)
class SlurmBackfill:
    mode: BackfillMode = BackfillMode.CONSERVATIVE
    #: Workloads examined for a reservation per cycle (Slurm's bf_max_job_test).
    max_job_test: int = 500
    #: How far ahead reservations may start, seconds (Slurm's bf_window, 1440 min).
    window: float = 86_400.0
    #: EASY: how many blocked workloads get a reservation (bf_job_part_count_reserve).
    reserve_limit: int | None = None
    name: str = "SlurmBackfill"

    def start(
        self, snap: Snapshot, queues: QueueManager, profile: Profile, now: float
    ) -> AdmitCycle:
        # With parked workloads this is an incremental cycle: their reservations stand.
        kept = [r for r in snap.plan if r.workload in queues.parked] if queues.parked else []
        return Backfill(snap, profile, self, now, kept)
