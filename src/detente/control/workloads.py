"""Load: the store's rows → the core's snapshot and queue (the reconciler's step 2).

A job becomes a `Workload` named by its id through the one conversion
(`detente.api.jobs.to_workload`). Active jobs are charged on their recorded nodes and devices.
Pending jobs queue if eligible: dependencies met, and under their array's limit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.api.jobs import to_workload
from detente.api.jobspec import JobSpec, stored
from detente.control import depends, layout
from detente.control.cache import JobCache
from detente.control.running import RunningSnapshot
from detente.control.store.models import (
    ACTIVE,
    PENDING,
    STOPPING,
    Job,
    JobSpecRow,
    Setting,
    User,
)
from detente.core.admission import never_fits as core_never_fits
from detente.core.cluster import Cluster
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.queues import QueueConfig
from detente.core.resources import CPU
from detente.core.snapshot import Snapshot
from detente.core.workload import (
    Admission,
    PodPlacement,
    Workload,
)


def setting(s: Session, key: str, default: Any = None) -> Any:
    row = s.get(Setting, key)
    return default if row is None else row.value


def put_setting(s: Session, key: str, value: Any) -> None:
    row = s.get(Setting, key)
    if row is None:
        s.add(Setting(key=key, value=value))
    else:
        row.value = value


def cluster_and_config(s: Session) -> tuple[Cluster, QueueConfig]:
    cl = layout.cluster(setting(s, "nodes", []), setting(s, "node_states", {}))
    teams = set(s.scalars(select(User.team)))
    return cl, layout.queue_config(cl, setting(s, "manifests"), teams)


def workload(job: Job, config: QueueConfig, grace: float = 0.0) -> Workload:
    """The stored job as the core sees it, through the one conversion
    (`detente.api.jobs.to_workload`) that plan and the simulator use too."""
    return to_workload(
        stored(job.spec), name=str(job.id), queue=f"{layout.NAMESPACE}/{job.queue}",
        seq=job.id, submit_time=job.submit_time, config=config, user=job.user, grace=grace,
    )  # fmt: skip


#: A workload's fields, copied from the first task of an array to the others.
_FIELDS = tuple(f.name for f in fields(Workload))


def _built(
    job: Job, config: QueueConfig, grace: float, shared: dict[tuple[int, str, str], Workload]
) -> Workload:
    """`workload`, once per stored spec, queue and user in ``shared``: the tasks of an
    array (thousands, one spec) differ only in name, sequence and submit time, and
    converting each cost ≈ 0.16 ms (0.3 s before a 2,000-task array's first start)."""
    key = (job.spec_id, job.queue, job.user)
    first = shared.get(key)
    if first is None:
        w = shared[key] = workload(job, config, grace)
        return w
    w = object.__new__(Workload)
    for name in _FIELDS:
        object.__setattr__(w, name, getattr(first, name))
    for name, value in (("name", str(job.id)), ("seq", job.id), ("submit_time", job.submit_time)):
        object.__setattr__(w, name, value)
    return w


def blocked(job: Job, idx: depends.Index, running_in_array: Counter[int], now: float) -> str | None:
    """Why ``job`` may not queue yet (Slurm's reason), or None."""
    if job.held:
        return "JobHeldUser"
    begin = job.spec.get("begin_time")
    if begin is not None and now < begin:
        return "BeginTime"
    if (why := depends.blocked(job, idx, now)) is not None:
        return why
    limit = job.spec.get("array_limit")
    if limit and job.array_job_id is not None and running_in_array[job.array_job_id] >= limit:
        return "JobArrayTaskLimit"
    return None


def _gated(spec: dict[str, Any]) -> bool:
    """Whether a spec has any of the fields that can keep its jobs out of the queue
    (`blocked`: a begin time, dependencies, an array limit); a hold is the job's own."""
    get = spec.get  # spelled out: asked of every spec at each decision
    return bool(get("begin_time") or get("dependencies") or get("array_limit"))


def load(
    s: Session, profile: Profile, cache: dict[int, Workload] | None = None,
    reasons: dict[int, str] | None = None, now: float = 0.0,
    live: JobCache | None = None, queue: bool = True, base: RunningSnapshot | None = None,
) -> tuple[Snapshot, QueueManager, dict[int, Any]]:  # fmt: skip
    """The snapshot with active jobs charged, the queue of eligible pending jobs, and the
    rows by id. ``cache`` keeps built workloads across calls (a job's workload never
    changes while the queue config stays the same; the caller clears it otherwise).
    Why ineligible jobs wait goes into ``reasons`` (job id → reason); the rows are not
    changed, so loading never writes (writes are compare-and-set, see `Job`). ``now``
    judges ``after:ID+MINUTES`` dependencies. Without ``queue``, only the running
    snapshot is built (the queue comes back empty). With ``live`` (refreshed by the caller),
    jobs and configuration come from that cache (`CachedJob` records, not ORM rows);
    without it, from the store. With ``base``, the running jobs' snapshot is patched
    from the last call's (`detente.control.running`), not built again."""
    reasons = {} if reasons is None else reasons
    cl, config = live.cluster_config(s) if live is not None else cluster_and_config(s)
    cache = {} if cache is None else cache
    shared: dict[tuple[int, str, str], Workload] = {}

    def wl(job: Job) -> Workload:
        w = cache.get(job.id)
        if w is None:
            w = cache[job.id] = _built(job, config, profile.default_grace, shared)
        return w

    if live is not None:
        jobs: dict[int, Any] = dict(live.rows)
    else:
        states = (*ACTIVE, PENDING) if queue else ACTIVE
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.state.in_(states)))}
    for gone in [k for k in cache if k not in jobs]:
        del cache[gone]
    if base is not None:
        snap = base.snapshot(cl, config, jobs, wl, _admission)
    else:
        snap = Snapshot(cl, config)
        for job in jobs.values():
            if job.state in ACTIVE and job.nodes:
                snap.admit(_admission(job, snap, wl(job)), keep_devices=True)
    pending = [j for j in jobs.values() if j.state == PENDING] if queue else []
    idx = depends.index(s, pending, jobs.values())
    in_array: Counter[int] = Counter(
        j.array_job_id for j in jobs.values() if j.state in ACTIVE and j.array_job_id
    )
    queued = []
    # Whether a spec gates its jobs, asked once per spec: an array's tasks share one.
    gated: dict[int, bool] = {}
    for job in sorted(pending, key=lambda j: j.id):
        if job.state != PENDING:
            continue
        if (g := gated.get(job.spec_id)) is None:
            g = gated[job.spec_id] = _gated(job.spec)
        why = blocked(job, idx, in_array, now) if g or job.held else None
        if why is not None:
            reasons[job.id] = why
            continue
        try:
            built = wl(job)
        except (TypeError, ValueError, KeyError) as e:  # a bad stored spec waits alone
            reasons[job.id] = f"InvalidSpec: {e}"[:500]
            continue
        if job.array_job_id is not None:
            in_array[job.array_job_id] += 1  # counts toward the limit from now
        queued.append(built)
    # Sorted once, by `reprioritize` with the real context (every caller runs it).
    return snap, QueueManager(profile.queue_sort, queued, unsorted=True), jobs


def _admission(job: Job, snap: Snapshot, w: Workload) -> Admission:
    cq = snap.config.cluster_queue_of(w.queue)
    flavors = (snap.first_flavors(cq, w) if cq is not None else None) or {}
    devices = job.devices or [[] for _ in job.nodes or []]
    placements = [
        PodPlacement("main", i, snap.cluster.index[n], tuple(devices[i]))
        for i, n in enumerate(job.nodes or [])
    ]
    adm = Admission(w, cq.name if cq else "", flavors, placements, job.start_time or 0.0)
    if job.state == STOPPING:  # already on its way out: not a victim twice
        adm.evicting_until = job.kill_at if job.kill_at is not None else job.start_time
    return adm


def whole_cluster(s: Session) -> Cluster:
    """The cluster with every node up: what "could this job ever run" is asked of (a
    job that fits once a down node returns is accepted, as sbatch accepts it)."""
    return layout.cluster(setting(s, "nodes", []))


def never_fits(cl: Cluster, config: QueueConfig, spec: JobSpec) -> str | None:
    """Why a job could never run on ``cl`` (sbatch rejects such jobs at once); ask it of
    `whole_cluster`."""
    job = Job(id=0, name=spec.name, user="", queue=spec.queue or "default",
              spec_row=JobSpecRow(data=spec.model_dump()), submit_time=0.0)  # fmt: skip
    w = workload(job, config)
    ps = w.pod_sets[0]
    if w.topology is not None and cl.level_index(w.topology.level) is None:
        return f"spec.topology.level: no such topology level {w.topology.level!r}"
    if (w.topology or w.node_filter) is not None and (why := core_never_fits(cl, w)) is not None:
        return f"Requested node configuration is not available: {why.reason}"
    if cl.ever_slots(0, ps.request, ps.one_per_node) < ps.count:
        where = "node(s)" if ps.one_per_node else "pod(s)"
        return (
            f"Requested node configuration is not available: {ps.count} {where} with "
            f"{spec.gpus_per_node:g} GPU(s), {ps.request[CPU] // 1000} CPU(s) and "
            f"{spec.mem_per_node >> 20} MiB each; the cluster has {len(cl.nodes)} node(s), "
            f"at most {cl.max_node_gpus} GPU(s) per node"
        )
    return None


def team_known(s: Session, team: str) -> bool:
    """Whether ``team`` has a queue: without applied ClusterQueues every team gets its
    own LocalQueue in the default ClusterQueue; with them, a LocalQueue must be named
    after the team or sit in its namespace."""
    manifests = setting(s, "manifests") or []
    if not any(isinstance(d, dict) and d.get("kind") == "ClusterQueue" for _, _, d in manifests):
        return True
    _, config = cluster_and_config(s)
    return any(team in (lq.name, lq.namespace) for lq in config.local_queues.values())
