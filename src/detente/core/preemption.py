"""Preemption: free room for a blocked workload by evicting others, fewest victims first.

Candidates (Kueue's ``withinClusterQueue`` / ``reclaimWithinCohort``):

* in the preemptor's ClusterQueue: lower priority (or, with
  LowerOrNewerEqualPriority, equal priority and admitted later);
* in other ClusterQueues of its cohort, only while they borrow (use more than their
  nominal quota) and only if the preemptor stays within its own nominal quota —
  so a queue reclaiming what it lent can never be reclaimed from in turn, and two
  queues cannot preempt each other in a loop;
* with ``preemptible_only`` (the ``detente`` profile), only workloads marked
  preemptible (``--requeue``, ``preemptible: true``) are victims, within a queue and
  by cohort reclaim alike: a borrower that never opted in keeps what it borrowed
  until it ends (the lender waits), so no job is restarted that did not agree to be.

Order: workloads already being evicted first (they free room anyway), other queues
before the preemptor's own, lower priority, least progress (latest start), name.
Victims are added in that order until the preemptor fits — quota *and* placement,
checked on a copy of the snapshot — then a reverse pass keeps running every victim
the preemptor does not need. If it still does not fit with every candidate gone,
nobody is preempted.

Victims get their checkpoint grace: the result carries a deadline per victim, and
the driver stops and requeues them then, keeping their submit time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from detente.core.admission import quota_fit, stage_workload
from detente.core.framework import Rng
from detente.core.queues import (
    ClusterQueue,
    PreemptionPolicy,
    ReclaimWithinCohort,
    WithinClusterQueue,
)
from detente.core.snapshot import Snapshot, quota_charge
from detente.core.status import Code, Status
from detente.core.workload import Admission, Workload

if TYPE_CHECKING:
    from detente.core.profiles import Profile

NAME = "Preemption"
MAX_CANDIDATES = 64


@dataclass(frozen=True, slots=True)
class Preemption:
    victim: str
    preemptor: str
    reason: str
    #: When the victim must be gone: now + its checkpoint grace.
    deadline: float
    #: (pod set, index) of the pods to stop; empty means the whole workload.
    pods: tuple[tuple[str, int], ...] = ()


def policy_for(cq: ClusterQueue, profile: Profile) -> PreemptionPolicy:
    return cq.preemption or profile.preemption


def _eligible(
    snap: Snapshot, w: Workload, cq: ClusterQueue, adm: Admission, profile: Profile
) -> bool:
    v = adm.workload
    if not adm.complete:
        return False
    pol = policy_for(cq, profile)
    if adm.cluster_queue == cq.name:
        if profile.preemptible_only and not v.preemptible:
            return False
        if pol.within_cluster_queue == WithinClusterQueue.LOWER_PRIORITY:
            return v.priority < w.priority
        if pol.within_cluster_queue == WithinClusterQueue.LOWER_OR_NEWER_EQUAL_PRIORITY:
            return v.priority < w.priority or (v.priority == w.priority and v.seq > w.seq)
        return False
    other = snap.config.cluster_queues.get(adm.cluster_queue)
    if other is None or other.cohort is None or other.cohort != cq.cohort:
        return False
    if pol.reclaim_within_cohort == ReclaimWithinCohort.NEVER:
        return False
    if profile.preemptible_only and not v.preemptible:
        return False  # a borrower that never opted in keeps its GPUs until it ends
    if pol.reclaim_within_cohort == ReclaimWithinCohort.LOWER_PRIORITY and v.priority >= w.priority:
        return False
    return _borrowing(snap, other.name, {fr for fr in adm_frs(adm)})


def adm_frs(adm: Admission) -> set[tuple[str, str]]:
    return set(quota_charge(adm.workload, adm.flavors))


def _borrowing(snap: Snapshot, cq: str, frs: set[tuple[str, str]]) -> bool:
    return any(snap.quota.used(cq, fr) > snap.quota.tree.nominal(cq, fr) for fr in frs)


def _order(adm: Admission, cq: ClusterQueue) -> tuple[object, ...]:
    evicting = adm.evicting_until is None
    return (
        evicting,
        adm.cluster_queue == cq.name,
        adm.workload.priority,
        -adm.start_time,
        adm.workload.name,
    )


def find_victims(
    snap: Snapshot,
    w: Workload,
    cq: ClusterQueue,
    flavors: dict[str, str],
    profile: Profile,
    rng: Rng,
) -> list[Admission] | None:
    """The fewest running workloads whose removal lets ``w`` fit, or None if none does.

    Works on a copy; ``snap`` is not changed.
    """
    cands = sorted(
        (a for a in snap.running.values() if _eligible(snap, w, cq, a, profile)),
        key=lambda a: _order(a, cq),
    )[:MAX_CANDIDATES]
    if not cands:
        return None
    reclaiming = any(a.cluster_queue != cq.name for a in cands)
    if reclaiming and snap.quota.borrowing(cq.name, quota_charge(w, flavors)):
        # Reclaim only what was lent: a borrower may not take from other borrowers.
        cands = [a for a in cands if a.cluster_queue == cq.name]
    work = snap.clone()
    nodes = snap.flavor_nodes(frozenset(flavors.values()))
    victims: list[Admission] = []
    for adm in cands:
        work.release(adm.workload.name)
        victims.append(adm)
        if _fits(work, w, cq, flavors, nodes, profile, rng):
            break
    else:
        return None
    for adm in reversed(victims[:-1]):  # keep every victim the preemptor does not need
        work.admit(
            Admission(
                adm.workload, adm.cluster_queue, adm.flavors, list(adm.placements), adm.start_time
            )
        )
        if _fits(work, w, cq, flavors, nodes, profile, rng):
            victims.remove(adm)
        else:
            work.release(adm.workload.name)
    return victims


def _fits(
    snap: Snapshot,
    w: Workload,
    cq: ClusterQueue,
    flavors: dict[str, str],
    nodes: frozenset[int] | None,
    profile: Profile,
    rng: Rng,
) -> bool:
    if not quota_fit(snap.quota, cq, w, flavors, profile.borrowing).ok:
        return False
    _, stmt = stage_workload(snap.state, w, nodes, profile, rng)
    if stmt is None:
        return False
    stmt.rollback()
    return True


class Preemptor:
    """Per-cycle gate: tries preemption only where a victim could exist, a few times per cycle."""

    def __init__(self, snap: Snapshot, profile: Profile, budget: int = 16) -> None:
        self.snap, self.profile, self.budget = snap, profile, budget
        self.lowest: dict[str, int] = {}
        self.borrowing: set[str] = set()
        self._borrows: dict[str, bool] = {}
        self._ready = False

    def _index(self) -> None:
        """Built on first use: most cycles never ask."""
        self._ready = True
        snap, profile = self.snap, self.profile
        for a in snap.running.values():
            if profile.preemptible_only and not a.workload.preemptible:
                continue  # never a victim
            q = a.cluster_queue
            self.lowest[q] = min(self.lowest.get(q, a.workload.priority), a.workload.priority)
        for name in snap.config.cluster_queues:
            frs = set(snap.quota.usage.get(name, {}))
            if _borrowing(snap, name, frs):
                self.borrowing.add(name)

    def worth_trying(self, w: Workload, cq: ClusterQueue) -> bool:
        if self.budget <= 0:
            return False
        if not self._ready:
            self._index()
        pol = policy_for(cq, self.profile)
        lowest = self.lowest.get(cq.name)
        if lowest is not None and (
            (pol.within_cluster_queue == WithinClusterQueue.LOWER_PRIORITY and lowest < w.priority)
            or (
                pol.within_cluster_queue == WithinClusterQueue.LOWER_OR_NEWER_EQUAL_PRIORITY
                and lowest <= w.priority
            )
        ):
            return True
        if pol.reclaim_within_cohort != ReclaimWithinCohort.NEVER and cq.cohort is not None:
            return self._cohort_borrows(cq)
        return False

    def _cohort_borrows(self, cq: ClusterQueue) -> bool:
        """Whether another queue of ``cq``'s cohort borrows (fixed for the cycle, as
        the index; asked once per queue, not once per pending workload)."""
        known = self._borrows.get(cq.name)
        if known is None:
            cqs = self.snap.config.cluster_queues
            known = any(cqs[b].cohort == cq.cohort for b in self.borrowing if b != cq.name)
            self._borrows[cq.name] = known
        return known

    def run(
        self, w: Workload, cq: ClusterQueue, rng: Rng, now: float
    ) -> tuple[Status, list[Preemption]]:
        self.budget -= 1
        return preempt(self.snap, w, cq, self.profile, rng, now)


def preempt(
    snap: Snapshot, w: Workload, cq: ClusterQueue, profile: Profile, rng: Rng, now: float
) -> tuple[Status, list[Preemption]]:
    """Chooses victims for ``w`` and marks them evicting on ``snap``; ([], status) if none."""
    found = snap.flavor_assignments(cq, tuple(w.total))
    if isinstance(found, str):
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, "no quota", NAME), []
    for flavors in found:
        victims = find_victims(snap, w, cq, flavors, profile, rng)
        if victims is None:
            continue
        fresh = [v for v in victims if v.evicting_until is None]
        out = []
        for v in fresh:
            deadline = now + v.workload.checkpoint_grace
            # A new admission, not a change to the old: clones of the snapshot share
            # their running admissions (`Snapshot.clone`), and must not see this mark.
            snap.running[v.workload.name] = replace(v, evicting_until=deadline)
            why = (
                f"preempted by {w.name} ({'reclaim' if v.cluster_queue != cq.name else 'priority'})"
            )
            out.append(Preemption(v.workload.name, w.name, why, deadline))
        names = ", ".join(v.workload.name for v in victims)
        return Status(Code.UNSCHEDULABLE, f"waiting for preempted {names} to end", NAME), out
    return Status(Code.UNSCHEDULABLE, "no preemption frees enough", NAME), []
