"""Pod-by-pod binding, as the Kubernetes default scheduler does it.

Every unbound pod of the given workloads becomes one queue entry, ordered by its
workload's key with the pod index before the sequence number, so pods of equally
ranked workloads interleave (as a Job controller creates them in parallel). Each
pod that fits is bound at once; nothing is all-or-nothing, so two jobs can each
hold half of what they need and wait for ever.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from typing import TYPE_CHECKING

from detente.core.admission import eligible
from detente.core.framework import PlaceContext, Rng
from detente.core.plugins.default_preemption import NAME as PREEMPT
from detente.core.plugins.default_preemption import choose_victims, pods_by_node
from detente.core.preemption import Preemption
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.statement import Statement
from detente.core.status import Status
from detente.core.workload import Admission, PodPlacement, PodSet, Workload

if TYPE_CHECKING:
    from detente.core.cycle import CycleResult
    from detente.core.profiles import Profile


def _pod_entries(
    snap: Snapshot, workloads: list[Workload], queues: QueueManager, profile: Profile
) -> list[tuple[Hashable, Workload, PodSet]]:
    """One entry per unbound pod; pods of equally ranked workloads interleave by index."""
    entries: list[tuple[Hashable, Workload, PodSet]] = []
    for w in workloads:
        key = profile.queue_sort.sort_key(w, queues.ctx)
        have = snap.running.get(w.name)
        for ps in w.pod_sets:
            done = sum(1 for p in have.placements if p.pod_set == ps.name) if have else 0
            for i in range(done, ps.count):
                entries.append(((*key[:-1], i, key[-1], ps.name), w, ps))
    entries.sort(key=lambda e: e[0])  # type: ignore[arg-type, return-value]
    return entries


def bind_pods(
    snap: Snapshot,
    workloads: list[Workload],
    queues: QueueManager,
    profile: Profile,
    now: float,
    rng: Rng,
    res: CycleResult,
) -> None:
    """Binds unbound pods of ``workloads`` one at a time, in queue order, into ``res``."""
    grown: dict[str, Admission] = {}
    failed: dict[Hashable, Status] = {}
    pre = _PodPreemptor(snap, profile, now, res) if profile.pod_preemption else None
    for _, w, ps in _pod_entries(snap, workloads, queues, profile):
        adm = grown.get(w.name) or snap.running.get(w.name)
        if adm is None:
            adm = Admission(w, "", {}, [], now)  # plain Kubernetes: no queue, no quota
        taken = frozenset(p.node for p in adm.placements)
        shape = (ps.request, w.exclusive, w.node_filter)
        if shape in failed and (not taken or not ps.one_per_node):
            res.pending.setdefault(w.name, failed[shape])
            continue
        stmt = Statement(snap.state)
        nodes = eligible(snap.cluster, w, None)
        ctx = PlaceContext(snap.state, w, nodes, profile.scores, rng, taken)
        status = profile.placement.place(ctx, ps, 1, stmt)
        if not status.ok:
            if pre is not None and pre.could_help(w):
                status = pre.run(w, ps, status)
            elif not taken or not ps.one_per_node:
                failed[shape] = status
            res.pending.setdefault(w.name, status)
            continue
        s = stmt.staged[0]
        used = {p.index for p in adm.placements if p.pod_set == ps.name}
        idx = min(set(range(ps.count)) - used)
        placed = [*adm.placements, PodPlacement(ps.name, idx, s.node, s.devices)]
        adm = replace(adm, placements=placed)
        grown[w.name] = adm
    for name, adm in grown.items():
        snap.running[name] = adm
        res.admissions.append(adm)
        if adm.complete:
            res.pending.pop(name, None)
    for w in workloads:
        held, why = snap.running.get(w.name), res.pending.get(w.name)
        if held is not None and why is not None and not held.complete:
            bound = f"{len(held.placements)}/{held.workload.pod_count} pods bound"
            if held.flavors:
                bound = f"quota reserved in {held.cluster_queue}; {bound}"
            res.pending[w.name] = Status(why.code, f"{bound}; {why.reason}", why.plugin)


class _PodPreemptor:
    """DefaultPreemption inside one binding pass; marks victims' pods as evicting."""

    def __init__(self, snap: Snapshot, profile: Profile, now: float, res: CycleResult) -> None:
        self.snap, self.profile, self.now, self.res = snap, profile, now, res
        self.by_node = pods_by_node(snap)
        pods = [v for vs in self.by_node.values() for v in vs]
        self.lowest = min((v.priority for v in pods if not v.evicting), default=None)
        self.leaving = any(v.evicting for v in pods)

    def could_help(self, w: Workload) -> bool:
        return self.leaving or (self.lowest is not None and self.lowest < w.priority)

    def run(self, w: Workload, ps: PodSet, why: Status) -> Status:
        found = choose_victims(self.snap, w, ps, self.by_node)
        if found is None:
            return why
        node, victims = found
        where = self.snap.cluster.nodes[node].name
        if not victims:
            return Status(why.code, f"waiting for preempted pods to leave {where}", PREEMPT)
        by_wl: dict[str, list[tuple[str, int]]] = {}
        for v in victims:
            by_wl.setdefault(v.workload, []).append((v.pod_set, v.index))
        for name, pods in by_wl.items():
            adm = self.snap.running[name]
            grace = adm.workload.checkpoint_grace or self.profile.default_grace
            deadline = self.now + grace
            marked = [
                replace(p, evicting_until=deadline) if (p.pod_set, p.index) in pods else p
                for p in adm.placements
            ]
            self.snap.running[name] = replace(adm, placements=marked)
            why_v = f"{len(pods)} pod(s) preempted by {w.name} on {where}"
            self.res.preemptions.append(Preemption(name, w.name, why_v, deadline, tuple(pods)))
        self.by_node = pods_by_node(self.snap)
        self.leaving = True
        names = ", ".join(sorted(by_wl))
        return Status(why.code, f"nominated {where}; preempting pods of {names}", PREEMPT)
