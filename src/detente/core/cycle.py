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

from detente.core.framework import FirstChoice, Preempting, Rng
from detente.core.podcycle import bind_pods
from detente.core.preemption import NAME as PREEMPTION
from detente.core.preemption import Preemption
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.queues import ClusterQueue, QueueingStrategy
from detente.core.snapshot import Snapshot
from detente.core.status import Code, Status, unschedulable
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
    return _gang_cycle(snapshot, queues, profile, now, rng)


def _in_order(snap: Snapshot, queues: QueueManager, profile: Profile) -> Iterator[Workload]:
    """Queue order, except that workloads which would borrow go after those that fit
    within their nominal quota (Kueue's classic order). So a queue reclaiming its quota
    is served before the borrower it evicted, which cannot slip back in first."""
    deferred = []
    for w in queues.active():
        if profile.quota_fit.would_borrow(snap, w):
            deferred.append(w)
        else:
            yield w
    yield from deferred


def _gang_cycle(
    snap: Snapshot, queues: QueueManager, profile: Profile, now: float, rng: Rng
) -> CycleResult:
    res = CycleResult()
    admit = profile.admit.start(snap, queues, profile, now)
    pre = profile.post_filter.start(snap, profile)
    gate = _Gate(profile, _parked_blockers(snap, queues, profile))
    free_left = snap.state.free_milli[0]  # GPUs free before any cordon of this cycle
    full: dict[tuple[int, int], Status] = {}
    resolved: dict[str, tuple[ClusterQueue | None, Status | None]] = {}
    seen = _Rejected(profile)
    for w in _in_order(snap, queues, profile):  # step 1
        if w.name in snap.running:
            continue  # quota already reserved; its pods are being bound
        if (got := resolved.get(w.queue)) is None:  # step 2, once per queue
            got = resolved[w.queue] = profile.quota_fit.resolve(snap, w)
        cq, unresolved = got
        need = w.total.gpu_milli
        if (again := seen.get(cq, w, need)) is not None:
            res.pending[w.name] = again
            continue
        if (skip := unresolved or gate.skip(w, cq)) is not None:
            res.pending[w.name] = skip
            continue
        if need > free_left and admit.may_skip_when_full() and not _may_preempt(pre, w, cq):
            # Fast path: more GPUs than are free anywhere, and nothing else to try.
            res.pending[w.name] = gate.left(w, cq, _no_room(full, need, free_left))
            seen.put(cq, w, need, res.pending[w.name])
            continue
        status, adm = admit.admit_now(w, cq, rng)  # step 3
        if adm is not None:
            snap.running[w.name] = adm
            res.admissions.append(adm)
            free_left -= need
            seen.clear()
            continue
        if status.code == Code.UNSCHEDULABLE and _may_preempt(pre, w, cq):  # step 4
            assert cq is not None
            outcome, victims = pre.run(w, cq, rng, now)
            if outcome.plugin == PREEMPTION and outcome.reason.startswith("waiting"):
                res.preemptions += victims
                reason = f"{status.reason}; {outcome.reason}"
                res.pending[w.name] = Status(outcome.code, reason, outcome.plugin)
                continue
        status = admit.blocked(w, cq, rng, status)  # step 5
        res.pending[w.name] = gate.left(w, cq, status)  # step 6
    admit.finish(queues, rng, res)
    return res


def _no_room(memo: dict[tuple[int, int], Status], need: int, free: int) -> Status:
    """The fast path's status, one per (need, free) in a cycle: thousands of pending
    workloads share a few."""
    key = (need, free)
    if key not in memo:
        why = f"needs {need / 1000:g} GPUs; {free / 1000:g} free in the cluster"
        memo[key] = unschedulable("NodeFit", why)
    return memo[key]


class _Rejected:
    """Step 3's fast path, remembered within a cycle. A workload that needs more GPUs
    than are free, that no gate can hold back and that could preempt no one is
    rejected without trying; so is every later one with the same ClusterQueue, need
    and priority, with the same status, until an admission changes what is free —
    everything else the fast path asked is fixed for the rest of a cycle once it said
    no (`AdmitCycle.may_skip_when_full`, `Preempting.worth_trying`). At 5,000 pending,
    most of them rejected so, asking it all again for each cost most of a decision."""

    def __init__(self, profile: Profile) -> None:
        # No gate holds a workload back: no head budget, no strict ordering (StrictFIFO
        # queues are ruled out per queue, in `put`).
        self.plain = profile.heads_per_queue is None and not profile.strict_priority
        self.memo: dict[tuple[str, int, int], Status] = {}

    def get(self, cq: ClusterQueue | None, w: Workload, need: int) -> Status | None:
        if not self.memo or cq is None:
            return None
        return self.memo.get((cq.name, need, w.priority))

    def put(self, cq: ClusterQueue | None, w: Workload, need: int, status: Status) -> None:
        if self.plain and cq is not None and cq.strategy != QueueingStrategy.STRICT_FIFO:
            self.memo[(cq.name, need, w.priority)] = status

    def clear(self) -> None:
        self.memo.clear()


def _may_preempt(pre: Preempting, w: Workload, cq: ClusterQueue | None) -> bool:
    return cq is not None and pre.worth_trying(w, cq)


class _Gate:
    """Step 2's queueing rules: StrictFIFO blocking and the per-queue head budget."""

    def __init__(self, profile: Profile, blocked: dict[str, str]) -> None:
        self.profile, self.blocked = profile, blocked
        self.tried: dict[str, int] = {}

    def skip(self, w: Workload, cq: ClusterQueue | None) -> Status | None:
        """Why ``w`` is not tried this cycle, or None (then it counts as tried)."""
        key = cq.name if cq else ""
        if key in self.blocked:
            return unschedulable("StrictFIFO", f"behind {self.blocked[key]} in {key}")
        heads = self.profile.heads_per_queue
        if heads is not None and self.tried.get(key, 0) >= heads:
            return unschedulable("QueueHeads", f"{key or 'the queue'} tries {heads} per cycle")
        self.tried[key] = self.tried.get(key, 0) + 1
        return None

    def left(self, w: Workload, cq: ClusterQueue | None, status: Status) -> Status:
        """Records ``w`` left pending with ``status``; it may block its queue."""
        if strict_blocks(cq, self.profile, status.code):
            self.blocked[cq.name if cq else ""] = w.name
        return status


def _parked_blockers(snap: Snapshot, queues: QueueManager, profile: Profile) -> dict[str, str]:
    """ClusterQueues whose parked head blocks everything behind it (StrictFIFO, sched/builtin)."""
    out: dict[str, str] = {}
    if not queues.parked or not _may_block(snap, profile):
        return out  # every parked workload would be looked at for nothing
    for w in queues.ordered():
        if w.name in queues.parked:
            cq, _ = profile.quota_fit.resolve(snap, w)
            key = cq.name if cq else ""
            if key not in out and strict_blocks(cq, profile, Code.UNSCHEDULABLE):
                out[key] = w.name
    return out


def _may_block(snap: Snapshot, profile: Profile) -> bool:
    """Whether any workload left pending could block its queue (`strict_blocks`)."""
    return profile.strict_priority or any(
        cq.strategy == QueueingStrategy.STRICT_FIFO for cq in snap.config.cluster_queues.values()
    )


def strict_blocks(cq: ClusterQueue | None, profile: Profile, code: Code) -> bool:
    """Does a workload left pending with ``code`` block the rest of its ClusterQueue?"""
    if cq is not None and cq.strategy == QueueingStrategy.STRICT_FIFO:
        return True
    return profile.strict_priority and code != Code.UNSCHEDULABLE_AND_UNRESOLVABLE
