"""`plan`: what the scheduler would do now with these manifests.

Loads running jobs into a snapshot, queues the rest, and runs cycles at ``now``
until a cycle changes nothing. Each workload ends Admitted (with nodes and start)
or Pending (with the reason from the check that rejected it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from detente.api.loader import JobEntry, ManifestError, Manifests
from detente.core.driver import schedule
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.status import Status
from detente.core.timeline import Reservation
from detente.core.workload import Admission, PodPlacement

MAX_CYCLES = 10_000


@dataclass(frozen=True, slots=True)
class Decision:
    name: str
    state: str  # "Admitted" | "Pending"
    nodes: list[str]
    start: float | None
    reason: str | None
    cluster_queue: str
    #: For a pending workload holding a reservation: when, and on which nodes.
    reservation: dict[str, object] | None = None
    #: For a pending workload: its weighted priority terms and their sum (like sprio).
    priority: dict[str, object] | None = None

    def starting_no_earlier(self, t: float | None) -> Decision:
        if t is None or self.start is None:
            return self
        return replace(self, start=max(self.start, t))

    def with_priority(self, terms: dict[str, float] | None) -> Decision:
        if terms is None or self.state != "Pending":
            return self
        total = round(sum(terms.values()), 3)
        rounded = {k: round(v, 3) for k, v in terms.items()}
        return replace(self, priority={"total": total, "factors": rounded})

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "state": self.state,
            "nodes": self.nodes,
            "start": self.start,
            "reason": self.reason,
        }
        if self.reservation is not None:
            out["reservation"] = self.reservation
        if self.priority is not None:
            out["priority"] = self.priority
        return out


def build_snapshot(man: Manifests) -> Snapshot:
    """The cluster with every running job charged; ManifestError if they over-commit."""
    snap = Snapshot(man.cluster(), man.config)
    problems: list[str] = []
    for job in man.jobs:
        if job.running_nodes:
            adm = _running_admission(snap, job)
            for p in adm.placements:
                req = next(ps.request for ps in job.workload.pod_sets if ps.name == p.pod_set)
                if not snap.state.fits(p.node, req, job.workload.exclusive):
                    problems.append(
                        f"{job.source.where('status.nodes')}: node "
                        f"{snap.cluster.nodes[p.node].name} cannot hold this job's pod "
                        "beside the jobs already running there"
                    )
            if not problems:
                snap.admit(adm)
    if problems:
        raise ManifestError(problems)
    return snap


def _running_admission(snap: Snapshot, job: JobEntry) -> Admission:
    w = job.workload
    cq = snap.config.cluster_queue_of(w.queue)
    flavors = (snap.first_flavors(cq, w) if cq is not None else None) or {}
    ps = w.pod_sets[0]
    placements = [
        PodPlacement(ps.name, i, snap.cluster.index[n]) for i, n in enumerate(job.running_nodes)
    ]
    return Admission(w, cq.name if cq else "", flavors, placements, job.start_time or 0.0)


def plan(man: Manifests, profile: Profile, now: float = 0.0) -> list[Decision]:
    snap = build_snapshot(man)
    queues = QueueManager(profile.queue_sort, [j.workload for j in man.jobs if not j.running_nodes])
    reprioritize(snap, queues, profile.half_life, now)
    explained = {w.name: queues.explain(w) for w in queues.ordered()}
    pending: dict[str, Status] = {}
    reserved: dict[str, Reservation] = {}
    rng = random.Random(profile.seed)
    preempted: dict[str, str] = {}
    ready: dict[str, float] = {}  # a preemptor starts when its victims' grace ends
    for _ in range(MAX_CYCLES):
        result = schedule(snap, queues, profile, now, rng)
        pending = {n: st for n, st in result.pending.items() if n in queues}
        reserved = {r.workload: r for r in result.reservations}
        if result.preemptions:
            queues.unpark_all()  # the victims' capacity comes back: look again
        for p in result.preemptions:  # planning looks past the checkpoint grace at once
            if p.pods:
                w = snap.release_pods(p.victim, set(p.pods)).workload
            else:
                w = snap.release(p.victim).workload
            if p.victim not in queues:
                queues.add(w)
            preempted[p.victim] = p.reason
            ready[p.preemptor] = max(ready.get(p.preemptor, now), p.deadline)
        if not result.preemptions:
            break
    for name, why in preempted.items():
        if name in pending:
            pending[name] = replace(pending[name], reason=f"{why}; {pending[name].reason}")
    out = []
    for j in man.jobs:
        name = j.workload.name
        d = _decision(snap, j, pending.get(name), reserved.get(name))
        out.append(d.with_priority(explained.get(name)).starting_no_earlier(ready.get(name)))
    return out


def _decision(snap: Snapshot, job: JobEntry, why: Status | None, r: Reservation | None) -> Decision:
    name = job.workload.name
    adm = snap.running.get(name)
    nodes = [snap.cluster.nodes[p.node].name for p in adm.placements] if adm else []
    if adm is not None and adm.complete:
        return Decision(name, "Admitted", nodes, adm.start_time, None, adm.cluster_queue)
    resv = None
    if r is not None:
        names = sorted(snap.cluster.nodes[n].name for n in r.nodes)
        resv = {"start": r.start, "end": None if r.end == float("inf") else r.end, "nodes": names}
    return Decision(name, "Pending", nodes, None, str(why) if why else "not tried", "", resv)
