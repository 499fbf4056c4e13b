"""``detente apply``: queue manifests and jobs into the live system, as a plan first.

Queue objects (flavors, ClusterQueues, cohorts, LocalQueues, priority classes,
topologies) replace those of the same kind and name; the whole resulting set is
validated before anything is stored, so nothing is half applied. Jobs are submitted.
The plan lists what is created, changed or unchanged, and which jobs would start now.
"""

from __future__ import annotations

import math
import shlex
import time
from typing import Any

from sqlalchemy.orm import Session

from detente.api.loader import JobEntry, ManifestError, load_documents
from detente.control import jobs, workloads
from detente.control.spec import JobSpec
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.resources import CPU, MEMORY
from detente.store.models import Job, User

QUEUE_KINDS = {"Topology", "ResourceFlavor", "ClusterQueue", "Cohort", "LocalQueue",
               "WorkloadPriorityClass"}  # fmt: skip


class ApplyError(ValueError):
    pass


def _key(doc: Any) -> tuple[str, str]:
    meta = doc.get("metadata") or {} if isinstance(doc, dict) else {}
    return str(doc.get("kind", "")), str(meta.get("name", ""))


def job_spec(entry: JobEntry) -> JobSpec:
    w = entry.workload
    ps = w.pod_sets[0]
    gpus = ps.request.gpu_milli / 1000
    if gpus != int(gpus):
        raise ApplyError(f"{entry.source.where('spec.resources')}: the local executor "
                         f"runs whole GPUs only (got {gpus})")  # fmt: skip
    cmd = entry.command or ["true"]
    script = "#!/bin/bash\n" + (cmd[0] if len(cmd) == 1 else shlex.join(cmd)) + "\n"
    return JobSpec(
        name=w.name, queue=w.queue.split("/", 1)[-1], nodes=ps.count, gpus_per_node=int(gpus),
        cpus_per_task=max(1, math.ceil(ps.request[CPU] / 1000)),
        mem_per_node=ps.request[MEMORY], time_limit=w.time_limit,
        priority_class=w.priority_class or None, exclusive=w.exclusive, script=script,
    )  # fmt: skip


def apply(
    s: Session, actor: User, docs: list[tuple[str, int, Any]], dry_run: bool, now: float
) -> dict[str, Any]:
    stored: list[list[Any]] = workloads.setting(s, "manifests", []) or []
    merged = {_key(d): [f, i, d] for f, i, d in stored}
    plan: dict[str, list[str]] = {"created": [], "changed": [], "unchanged": [], "jobs": []}
    new_jobs = []
    for f, i, d in docs:
        kind, name = _key(d)
        if kind in QUEUE_KINDS:
            if actor.role != "admin":
                raise ApplyError(
                    f"{f}: document {i} ({kind} {name}): only the admin changes queues"
                )
            old = merged.get((kind, name))
            verb = "created" if old is None else ("unchanged" if old[2] == d else "changed")
            plan[verb].append(f"{kind}/{name}")
            merged[(kind, name)] = [f, i, d]
        elif kind == "Job":
            new_jobs.append((f, i, d))
        else:
            raise ApplyError(f"{f}: document {i} ({kind} {name}): not applicable to a live "
                             "cluster (nodes come from `detente up --nodes`)")  # fmt: skip
    try:
        man = load_documents([tuple(v) for v in merged.values()] + new_jobs)  # type: ignore[misc]
    except ManifestError as e:
        raise ApplyError("\n".join(e.problems)) from None
    specs = [job_spec(e) for e in man.jobs]
    plan["jobs"] = [sp.name for sp in specs]
    if dry_run:
        return {"plan": plan, "submitted": []}
    workloads.put_setting(s, "manifests", list(merged.values()))
    s.commit()
    _, config = workloads.cluster_and_config(s)
    queues = {lq.name for lq in config.local_queues.values()}
    ids = []
    try:
        for sp in specs:
            ids += jobs.submit(s, actor, sp, queues, now)
    except jobs.JobError as e:
        raise ApplyError(str(e)) from None
    return {"plan": plan, "submitted": ids}


def priority_terms(s: Session, profile: Profile, job: Job) -> dict[str, float] | None:
    """The pending job's weighted priority terms now (like sprio), if it is queued."""
    snap, queues, _ = workloads.load(s, profile)
    reprioritize(snap, queues, profile.half_life, time.time())
    w = queues.get(str(job.id))
    return queues.explain(w) if w is not None else None
