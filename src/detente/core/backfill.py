"""Reservations and backfill inside one cycle (Slurm's ``sched/backfill``).

In queue order, each workload either starts now — on nodes no reservation holds
during [now, now + its time limit) — or, if it cannot and is among the first
``bf_max_job_test`` tested, gets a reservation at its earliest start. Later
workloads then start now only where they do not touch a reservation, so a
backfilled workload can never delay a reserved one.

One fit function, three questions (Slurm's ``select`` modes):

* **now**: `Backfill.admit_now` — quota, then placement around the reservations;
* **ever**: `detente.core.admission` marks shapes that cannot fit even on the empty
  cluster as unresolvable, and those get no reservation;
* **when**: `Backfill.earliest` — the first checkpoint of the `Timeline` at which
  the workload's pods fit on nodes free of overlapping reservations, with gangs
  and topology requests placed by the same placement plugin as "now".
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import TYPE_CHECKING

from detente.core.admission import (
    QUOTA,
    ShapeCache,
    cached_failure,
    shape,
    stage_workload,
    try_admit,
)
from detente.core.framework import Rng
from detente.core.queue_manager import QueueManager
from detente.core.queues import ClusterQueue
from detente.core.quotaplan import QuotaPlan
from detente.core.snapshot import Snapshot
from detente.core.status import Code, Status, unschedulable
from detente.core.timeline import Reservation, Timeline
from detente.core.workload import Admission, Workload

if TYPE_CHECKING:
    from detente.core.cycle import CycleResult
    from detente.core.plugins.admit import SlurmBackfill
    from detente.core.profiles import Profile

NAME = "Backfill"


class Backfill:
    """Per-cycle backfill state (an `AdmitCycle`). Contract: used for one cycle on one
    snapshot."""

    def __init__(
        self,
        snap: Snapshot,
        profile: Profile,
        config: SlurmBackfill,
        now: float,
        kept: list[Reservation] | None = None,
    ) -> None:
        """``kept``: reservations of earlier cycles that still stand (incremental cycles)."""
        self.snap, self.profile, self.config, self.now = snap, profile, config, now
        self.timeline = Timeline(snap, now, config.window, profile.default_time_limit)
        self.reservations: list[Reservation] = list(kept or [])
        for r in self.reservations:
            self.timeline.add(r)
        self.failed = ShapeCache()
        self.quota = QuotaPlan(snap, now, profile.default_time_limit)
        self._unscored: Profile | None = None
        self._floor: dict[Hashable, list[tuple[float, float]]] = {}
        self.tested = len(self.reservations)

    def admit_now(
        self, w: Workload, cq: ClusterQueue | None, rng: Rng
    ) -> tuple[Status, Admission | None]:
        """Admits ``w`` now if it fits around the reservations; else says which it would delay."""
        tl, limit = self.timeline, self.timeline.limit(w)
        hit = cached_failure(self.snap, w, cq, self.failed, limit)
        if hit is not None:
            return hit, None
        if (taken := self._takes_held_quota(w, cq, limit)) is not None:
            return taken, None
        blocked = tl.blocking_now(limit)
        tl.cordon(self.snap.state).ensure(blocked)
        status, adm = try_admit(self.snap, w, cq, self.profile, self.failed, rng, self.now, limit)
        if adm is not None:
            tl.note_admission(adm)
            if cq is not None:
                self.quota.admitted(w, cq, adm.flavors, self.now + limit)
        elif blocked and status.code == Code.UNSCHEDULABLE and status.plugin != QUOTA:
            delayed = self._would_delay(w, cq, rng)
            if delayed is not None:
                status = delayed
                for flavors in self._flavor_sets(w, cq):
                    self.failed.put(shape(w, self.snap.flavor_nodes(flavors)), limit, status)
        return status, adm

    def finish(self, queues: QueueManager, rng: Rng, res: CycleResult) -> None:
        """Restores every state the cycle cordoned; records the standing reservations."""
        self.timeline.restore()
        res.reservations = self.reservations
        self.snap.plan = list(self.reservations)

    def may_skip_when_full(self) -> bool:
        return not self.can_reserve()

    def blocked(self, w: Workload, cq: ClusterQueue | None, rng: Rng, why: Status) -> Status:
        return self.reserve(w, cq, rng, why) if self.may_reserve(why) else why

    def can_reserve(self) -> bool:
        """Could another reservation still be made in this cycle?"""
        c = self.config
        if self.tested >= c.max_job_test:
            return False
        return c.reserve_limit is None or len(self.reservations) < c.reserve_limit

    def may_reserve(self, status: Status) -> bool:
        """Blocked now but not for ever (by nodes or by quota), within the depth."""
        return status.code == Code.UNSCHEDULABLE and self.can_reserve()

    def reserve(self, w: Workload, cq: ClusterQueue | None, rng: Rng, why: Status) -> Status:
        """Tries to reserve for ``w``; returns the status to report for it. A workload
        blocked by quota reserves from when its quota frees, and holds that quota."""
        self.tested += 1
        flavors = self.snap.first_flavors(cq, w) if cq is not None and self.profile.quota else None
        if why.plugin == QUOTA and (cq is None or flavors is None):
            return why
        quota_ok = None
        # Quota-blocked (by a quota tighter than its nodes), or behind a quota hold: the
        # start must leave every hold whole.
        binding = cq is not None and flavors is not None and self.quota.binding(cq, flavors)
        if (
            cq is not None
            and flavors is not None
            and ((why.plugin == QUOTA and binding) or self.quota.holds)
        ):
            qcq, qfl, borrow = cq, flavors, self.profile.borrowing

            def quota_ok(start: float, limit: float) -> bool:
                return self.quota.fits_at(w, qcq, qfl, start, limit, borrow)

        found = self.earliest(w, self._nodes(w, cq), rng, quota_ok)
        if found is None:
            return why
        if quota_ok is not None and cq is not None and flavors is not None:
            self.quota.hold(w, cq, flavors, found.start, found.end)
        self.timeline.add(found)
        self.reservations.append(found)
        reason = f"{why.reason}; reserved from t={found.start:.10g} on {len(found.nodes)} node(s)"
        return Status(Code.UNSCHEDULABLE, reason, NAME)

    def earliest(
        self, w: Workload, nodes: frozenset[int] | None, rng: Rng,
        quota_ok: Callable[[float, float], bool] | None = None,
    ) -> Reservation | None:  # fmt: skip
        """The first checkpoint at which ``w`` fits beside every overlapping reservation
        (and, with ``quota_ok``, at which its quota is free for its whole limit)."""
        tl, limit = self.timeline, self.timeline.limit(w)
        key = shape(w, nodes)
        need = w.total.gpu_milli
        for start, st in tl.candidates(self._floor_of(key, limit)):
            if quota_ok is not None and not quota_ok(start, limit):
                continue  # not a node failure: no floor is recorded for the shape
            tl.cordon(st).ensure(tl.held(start, start + limit))
            if st.free_milli[0] >= need:
                # Reservations hold whole nodes, so node scores would only cost time.
                if self._unscored is None:
                    self._unscored = replace(self.profile, scores=())
                _, stmt = stage_workload(st, w, nodes, self._unscored, rng)
                if stmt is not None:
                    used = frozenset(s.node for s in stmt.staged)
                    stmt.rollback()
                    return Reservation(w.name, start, start + limit, used)
            self._floor.setdefault(key, []).append((limit, start))
        return None

    def _floor_of(self, key: Hashable, limit: float) -> float:
        """The latest start known not to fit: a shape that failed from ``start`` with some
        limit fails there with any longer one (it overlaps more reservations)."""
        return max((s for lim, s in self._floor.get(key, ()) if lim <= limit), default=self.now)

    def _takes_held_quota(
        self, w: Workload, cq: ClusterQueue | None, limit: float
    ) -> Status | None:
        """Why ``w`` may not start now: it would run into a quota hold and take quota
        the holder needs (see `detente.core.quotaplan`)."""
        if not self.quota.holds or cq is None or not self.profile.quota:
            return None
        flavors = self.snap.first_flavors(cq, w)
        if flavors is None:
            return None
        end = self.now + limit
        h = self.quota.breaks(w, cq, flavors, self.now, end, self.profile.borrowing)
        if h is None:
            return None
        why = f"would take quota reserved for {h.workload.name} (from t={h.start:.10g})"
        return unschedulable(NAME, why)

    def _flavor_sets(self, w: Workload, cq: ClusterQueue | None) -> list[frozenset[str]]:
        if cq is None:
            return [frozenset()]
        found = self.snap.flavor_assignments(cq, tuple(w.total))
        return [] if isinstance(found, str) else [frozenset(f.values()) for f in found]

    def _nodes(self, w: Workload, cq: ClusterQueue | None) -> frozenset[int] | None:
        if cq is None or not self.profile.quota:
            return None
        flavors = self.snap.first_flavors(cq, w)
        return None if flavors is None else self.snap.flavor_nodes(frozenset(flavors.values()))

    def _would_delay(self, w: Workload, cq: ClusterQueue | None, rng: Rng) -> Status | None:
        """If ``w`` fits now only on reserved nodes, names the reservation it would delay."""
        self.timeline.cordon(self.snap.state).ensure(frozenset())
        _, stmt = stage_workload(self.snap.state, w, self._nodes(w, cq), self.profile, rng)
        if stmt is None:
            return None
        used = {s.node for s in stmt.staged}
        stmt.rollback()
        end = self.now + self.timeline.limit(w)
        for r in self.timeline.overlapping(self.now, end):
            if r.nodes & used:
                return unschedulable(
                    NAME, f"would delay the reservation of {r.workload} (from t={r.start:.10g})"
                )
        return None
