"""One scheduling cycle: ``run_cycle(snapshot, queues, profile, now) -> CycleResult``.

Gang profiles (Kueue/Slurm/Volcano shape), in steps:

1. Order pending workloads by the profile's queue sort; those that would borrow
   quota from their cohort go after those that fit within nominal (Kueue).
2. Resolve each one's LocalQueue to its ClusterQueue; honour StrictFIFO blocking and
   the per-queue head limit.
3. Nominate and admit in order: quota fit and placement fit for the first flavor
   assignment that passes both; placements are staged as one transaction. With
   backfill, only on nodes no reservation holds during the workload's time limit.
4. With preemption, evict the fewest lower-priority (or borrowing) workloads that
   let it fit (`detente.core.preemption`); it waits for their checkpoint grace.
5. With backfill, give a workload that cannot start now a reservation at its
   earliest start (`detente.core.backfill`).
6. Record, for each workload left pending, the `Status` that rejected it.

Pod-by-pod profiles (the Kubernetes default scheduler) interleave the pods of all
pending workloads in queue order and bind each pod that fits, so a workload may hold
some pods and wait for the rest (`detente.core.podcycle`). Kueue without TAS
admits on quota alone and then binds pods the same way.

Contract: ``snapshot`` is the cycle's own copy and is changed to include the
admissions; ``queues`` is read only. Same inputs → same result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from detente.core.admission import ShapeCache, reserve_quota, try_admit
from detente.core.backfill import Backfill
from detente.core.framework import FirstChoice, Rng
from detente.core.podcycle import bind_pods
from detente.core.preemption import NAME as PREEMPTION
from detente.core.preemption import Preemption, Preemptor
from detente.core.profiles import BackfillMode, Profile
from detente.core.queue_manager import QueueManager
from detente.core.queues import ClusterQueue, QueueingStrategy
from detente.core.snapshot import Snapshot, quota_charge
from detente.core.status import Code, Status, unresolvable, unschedulable
from detente.core.timeline import Reservation
from detente.core.workload import Admission, Workload


@dataclass(slots=True)
class CycleResult:
    """``admissions`` are new (or, pod by pod, grown) admissions; ``pending`` says why not."""

    admissions: list[Admission] = field(default_factory=list)
    pending: dict[str, Status] = field(default_factory=dict)
    reservations: list[Reservation] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)


def run_cycle(
    snapshot: Snapshot,
    queues: QueueManager,
    profile: Profile,
    now: float,
    rng: Rng | None = None,
) -> CycleResult:
    """``rng`` serves profiles that break ties at random; pass one seeded per run."""
    rng = rng or FirstChoice()
    if not profile.gang:
        res = CycleResult()
        bind_pods(snapshot, queues.active(), queues, profile, now, rng, res)
        return res
    res = _gang_cycle(snapshot, queues, profile, now, rng)
    if not profile.placement_at_admission:  # Kueue without TAS: kube-scheduler binds pods
        reserved = [w for w in queues.ordered() if _quota_only(snapshot, w.name)]
        bind_pods(snapshot, reserved, queues, profile, now, rng, res)
    return res


def _quota_only(snap: Snapshot, name: str) -> bool:
    adm = snap.running.get(name)
    return adm is not None and not adm.complete


def _in_order(snap: Snapshot, queues: QueueManager, profile: Profile) -> Iterator[Workload]:
    """Queue order, except that workloads which would borrow go after those that fit
    within their nominal quota (Kueue's classic order). So a queue reclaiming its quota
    is served before the borrower it evicted, which cannot slip back in first."""
    deferred = []
    for w in queues.active():
        if profile.quota and profile.borrowing and _would_borrow(snap, w):
            deferred.append(w)
        else:
            yield w
    yield from deferred


def _would_borrow(snap: Snapshot, w: Workload) -> bool:
    cq = snap.config.cluster_queue_of(w.queue)
    if cq is None or cq.cohort is None:
        return False
    flavors = snap.first_flavors(cq, w)
    return flavors is not None and snap.quota.borrowing(cq.name, quota_charge(w, flavors))


def _gang_cycle(
    snap: Snapshot, queues: QueueManager, profile: Profile, now: float, rng: Rng
) -> CycleResult:
    res = CycleResult()
    failed = ShapeCache()
    bf = None
    if profile.backfill != BackfillMode.NONE:
        # With parked workloads this is an incremental cycle: their reservations stand.
        kept = [r for r in snap.plan if r.workload in queues.parked] if queues.parked else []
        bf = Backfill(snap, profile, now, kept)
    pre = Preemptor(snap, profile) if profile.preempts else None
    blocked = _parked_blockers(snap, queues, profile)
    tried: dict[str, int] = {}
    free_left = snap.state.free_milli[0]  # GPUs free before any cordon of this cycle
    for w in _in_order(snap, queues, profile):  # step 1
        if w.name in snap.running:
            continue  # quota already reserved; its pods are being bound
        cq = snap.config.cluster_queue_of(w.queue) if profile.quota else None
        if profile.quota and cq is None:  # step 2
            why = f"LocalQueue {w.queue!r} does not exist"
            res.pending[w.name] = unresolvable("QueueResolver", why)
            continue
        key = cq.name if cq else ""
        if key in blocked:
            res.pending[w.name] = unschedulable("StrictFIFO", f"behind {blocked[key]} in {key}")
            continue
        if profile.heads_per_queue is not None and tried.get(key, 0) >= profile.heads_per_queue:
            why = f"{key or 'the queue'} tries {profile.heads_per_queue} per cycle"
            res.pending[w.name] = unschedulable("QueueHeads", why)
            continue
        tried[key] = tried.get(key, 0) + 1
        need = w.total.gpu_milli
        if (
            need > free_left
            and profile.placement_at_admission
            and (bf is None or not bf.can_reserve())
            and (pre is None or cq is None or not pre.worth_trying(w, cq))
        ):
            # Fast path: more GPUs than are free anywhere, and nothing else to try.
            why = f"needs {need / 1000:g} GPUs; {free_left / 1000:g} free in the cluster"
            res.pending[w.name] = unschedulable("NodeFit", why)
            if strict_blocks(cq, profile, Code.UNSCHEDULABLE):
                blocked[key] = w.name
            continue
        if not profile.placement_at_admission:  # step 3
            status, adm = reserve_quota(snap, w, cq, now)
        elif bf is None:
            status, adm = try_admit(snap, w, cq, profile, failed, rng, now)
        else:
            status, adm = bf.admit_now(w, cq, rng)
        if adm is not None:
            snap.running[w.name] = adm
            res.admissions.append(adm)
            free_left -= need
            continue
        if (
            pre is not None
            and cq is not None
            and status.code == Code.UNSCHEDULABLE
            and pre.worth_trying(w, cq)
        ):  # step 4
            outcome, victims = pre.run(w, cq, rng, now)
            if outcome.plugin == PREEMPTION and outcome.reason.startswith("waiting"):
                res.preemptions += victims
                reason = f"{status.reason}; {outcome.reason}"
                res.pending[w.name] = Status(outcome.code, reason, outcome.plugin)
                continue
        if bf is not None and bf.may_reserve(status):  # step 5
            status = bf.reserve(w, cq, rng, status)
        res.pending[w.name] = status  # step 6
        if strict_blocks(cq, profile, status.code):
            blocked[key] = w.name
    if bf is not None:
        bf.finish()
        res.reservations = bf.reservations
        snap.plan = list(bf.reservations)
    return res


def _parked_blockers(snap: Snapshot, queues: QueueManager, profile: Profile) -> dict[str, str]:
    """ClusterQueues whose parked head blocks everything behind it (StrictFIFO, sched/builtin)."""
    out: dict[str, str] = {}
    for w in queues.ordered() if queues.parked else ():
        if w.name in queues.parked:
            cq = snap.config.cluster_queue_of(w.queue) if profile.quota else None
            key = cq.name if cq else ""
            if key not in out and strict_blocks(cq, profile, Code.UNSCHEDULABLE):
                out[key] = w.name
    return out


def strict_blocks(cq: ClusterQueue | None, profile: Profile, code: Code) -> bool:
    """Does a workload left pending with ``code`` block the rest of its ClusterQueue?"""
    if cq is not None and cq.strategy == QueueingStrategy.STRICT_FIFO:
        return True
    return profile.strict_priority and code != Code.UNSCHEDULABLE_AND_UNRESOLVABLE
