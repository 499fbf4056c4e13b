"""``detente apply``: queue manifests and jobs into the live system, as a plan first.

Queue objects (flavors, ClusterQueues, cohorts, LocalQueues, priority classes,
topologies) replace those of the same kind and name; the whole resulting set is
validated before anything is stored, so nothing is half applied. Jobs are submitted.
The plan lists what is created, changed or unchanged, and which jobs would start now.
"""

from __future__ import annotations

import math
import random
from typing import Any

from sqlalchemy.orm import Session

from detente.api.jobspec import JobSpec
from detente.api.loader import JobEntry, ManifestError, load_documents
from detente.api.services import ServiceDoc
from detente.control import audit, jobs, queue_changes, services, workloads
from detente.control.store.models import Job, User
from detente.core.driver import schedule
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot

QUEUE_KINDS = {"Topology", "ResourceFlavor", "ClusterQueue", "Cohort", "LocalQueue",
               "WorkloadPriorityClass"}  # fmt: skip


#: How deep a document may nest (Kueue's objects need fewer than 10 levels).
MAX_DEPTH = 64


class ApplyError(ValueError):
    pass


def _bad_value(doc: Any) -> str | None:
    """Why a JSON document cannot be stored (too deep, a non-finite number, a string
    with NUL or a lone surrogate), or None. Iterative: a 50,000-deep list is fine."""
    todo = [(doc, 1)]
    while todo:
        v, d = todo.pop()
        if d > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(v, float) and not math.isfinite(v):
            return f"numbers must be finite (got {v})"
        if isinstance(v, str) and ("\x00" in v or not _utf8(v)):
            return f"strings must be UTF-8 without NUL (got {v[:40]!a})"
        if isinstance(v, dict):
            todo += [(x, d + 1) for x in v.values()] + [(k, d + 1) for k in v]
        elif isinstance(v, list):
            todo += [(x, d + 1) for x in v]
    return None


def _utf8(v: str) -> bool:
    try:
        v.encode()
    except UnicodeEncodeError:
        return False
    return True


def _key(doc: Any) -> tuple[str, str]:
    meta = doc.get("metadata") or {} if isinstance(doc, dict) else {}
    return str(doc.get("kind", "")), str(meta.get("name", ""))


#: The one job model's fields as a Job document names them.
MANIFEST_PATH = {
    "gpus_per_node": "spec.resources.nvidia.com/gpu", "replicas": "spec.replicas",
    "submit_time": "spec.submitTime", "user": "spec.user",
}  # fmt: skip


def job_spec(entry: JobEntry) -> JobSpec:
    """The live job for a Job document: the one `JobSpec` the loader read, queue
    without its namespace. What live cannot honour is refused at submit
    (`detente.control.jobs.live_refusals`), naming the document."""
    return entry.spec.model_copy(update={"queue": entry.workload.queue.split("/", 1)[-1]})


def _merge(
    actor: User, stored: list[list[Any]], docs: list[tuple[str, int, Any]]
) -> tuple[dict[tuple[str, str], list[Any]], list[tuple[str, int, Any]], dict[str, Any]]:
    """Stored queue objects with ``docs`` laid over them; the job documents; the plan
    (with a field diff per changed object)."""
    merged = {_key(d): [f, i, d] for f, i, d in stored}
    plan: dict[str, Any] = {"created": [], "changed": [], "unchanged": [], "diff": {}}
    new_jobs = []
    for f, i, d in docs:
        kind, name = _key(d)
        where = f"{f}: document {i} ({kind} {name})"
        if kind in QUEUE_KINDS:
            if actor.role != "admin":
                raise ApplyError(f"{where}: only the admin changes queues")
            old = merged.get((kind, name))
            verb = "created" if old is None else ("unchanged" if old[2] == d else "changed")
            plan[verb].append(f"{kind}/{name}")
            if verb == "changed":
                plan["diff"][f"{kind}/{name}"] = queue_changes.diff(old[2], d)
            merged[(kind, name)] = [f, i, d]
        elif kind in ("Job", "Service"):
            new_jobs.append((f, i, d))
        else:
            raise ApplyError(f"{where}: not applicable to a live cluster "
                             "(nodes come from `detente up --nodes`)")  # fmt: skip
    return merged, new_jobs, plan


def apply(
    s: Session, actor: User, docs: list[tuple[str, int, Any]], dry_run: bool, profile: Profile,
    now: float, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Applies ``docs`` in one transaction, or with ``dry_run`` rolls it back after
    planning. The plan names the queue objects created, changed (with a field diff) and
    unchanged, the LocalQueues it removes from under jobs (refused without ``force``),
    the jobs submitted, and which of those a scheduling cycle would start now."""
    for f, i, d in docs:
        if not isinstance(d, dict):
            raise ApplyError(f"{f}: document {i}: must be a mapping (got {type(d).__name__})")
        if (why := _bad_value(d)) is not None:
            raise ApplyError(f"{f}: document {i}: {why}")
    stored: list[list[Any]] = workloads.setting(s, "manifests", []) or []
    merged, new_jobs, plan = _merge(actor, stored, docs)
    try:
        man = load_documents([tuple(v) for v in merged.values()] + new_jobs)  # type: ignore[misc]
    except ManifestError as e:
        raise ApplyError("\n".join(e.problems)) from None
    entries = [e for e in man.jobs if e.service is None]
    specs = [job_spec(e) for e in entries]
    before = workloads.cluster_and_config(s)[1]
    workloads.put_setting(s, "manifests", list(merged.values()))
    workloads.put_setting(s, "generation", workloads.setting(s, "generation", 0) + 1)
    s.flush()
    _, config = workloads.cluster_and_config(s)
    try:
        plan["stranded"] = queue_changes.check_stranded(s, before, config, force)
    except queue_changes.StrandedError as e:
        s.rollback()
        raise ApplyError(str(e)) from None
    whole = workloads.whole_cluster(s)
    ids: list[int] = []
    try:
        for entry, sp in zip(entries, specs, strict=True):
            if refused := jobs.live_refusals(actor, sp):
                f, why = refused[0]
                raise jobs.JobError(f"{entry.source.where(MANIFEST_PATH[f])}: {why}")
            if (why := workloads.never_fits(whole, config, sp)) is not None:
                raise jobs.JobError(f"job {sp.name}: {why}")
            ids += jobs.submit(s, actor, sp, config, now, commit=False)
    except jobs.JobError as e:
        s.rollback()
        raise ApplyError(str(e)) from None
    plan["services"] = _services(s, actor, new_jobs, now)
    names = dict(zip(ids, (sp.name for sp in specs), strict=False))
    started = _would_start(s, profile, set(ids), now)
    mine = tuple(f"{f}: document {i} " for f, i, _ in docs)
    plan["warnings"] = [w for w in man.warnings if w.startswith(mine)]
    out = {"plan": {**plan, "jobs": [sp.name for sp in specs],
                    "admitted": [names[i] for i in ids if i in started]},
           "submitted": [] if dry_run else ids}  # fmt: skip
    if dry_run:
        s.rollback()
    else:
        audit.record(s, actor.name, "apply", _summary(plan), "ok", now)
        s.commit()
    return out


def _services(s: Session, actor: User, docs: list[tuple[str, int, Any]], now: float) -> list[str]:
    """Creates or updates the Service documents; "NAME: what happens" per service."""
    out = []
    for f, i, d in docs:
        if d.get("kind") != "Service":
            continue
        doc = ServiceDoc.model_validate(d)  # validated by load_documents already
        try:
            out.append(f"{doc.metadata.name}: {services.put(s, actor, doc, now)}")
        except jobs.JobError as e:
            s.rollback()
            raise ApplyError(f"{f}: document {i}: {e}") from None
    return out


def _summary(plan: dict[str, list[str]]) -> str:
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in plan.items() if v and k != "unchanged")


def delete(
    s: Session, actor: User, docs: list[tuple[str, int, Any]], dry_run: bool, now: float,
    force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Removes the queue objects ``docs`` name (kind and name; the rest of each document
    is not compared), as ``kubectl delete -f``. What remains must still be valid (a
    flavor a ClusterQueue uses cannot go), and a LocalQueue holding jobs goes only with
    ``force``. Jobs are cancelled with cancel, not here."""
    if actor.role != "admin" and any(_key(d)[0] != "Service" for _, _, d in docs):
        raise ApplyError("only the admin deletes queue objects")
    stored = {_key(d): [f, i, d] for f, i, d in workloads.setting(s, "manifests", []) or []}
    plan: dict[str, Any] = {"deleted": [], "not_found": []}
    for f, i, d in docs:
        kind, name = _key(d)
        if kind == "Service":
            plan["deleted" if services.remove(s, actor, name, now) else "not_found"].append(
                f"Service/{name}"
            )
            continue
        if kind not in QUEUE_KINDS:
            raise ApplyError(f"{f}: document {i} ({kind} {name}): only queue objects and "
                             "services are deleted here (jobs: detente cancel)")  # fmt: skip
        found = stored.pop((kind, name), None)
        plan["deleted" if found else "not_found"].append(f"{kind}/{name}")
    try:
        load_documents([tuple(v) for v in stored.values()])  # type: ignore[misc]
    except ManifestError as e:
        raise ApplyError("\n".join(e.problems)) from None
    before = workloads.cluster_and_config(s)[1]
    workloads.put_setting(s, "manifests", list(stored.values()))
    workloads.put_setting(s, "generation", workloads.setting(s, "generation", 0) + 1)
    s.flush()
    try:
        plan["stranded"] = queue_changes.check_stranded(
            s, before, workloads.cluster_and_config(s)[1], force
        )
    except queue_changes.StrandedError as e:
        s.rollback()
        raise ApplyError(str(e)) from None
    if dry_run:
        s.rollback()
    else:
        audit.record(s, actor.name, "delete", ", ".join(plan["deleted"]), "ok", now)
        s.commit()
    return {"plan": plan}


def _would_start(s: Session, profile: Profile, ids: set[int], now: float) -> set[int]:
    snap, queues, _ = workloads.load(s, profile)
    reprioritize(snap, queues, profile.half_life, now)
    decided = schedule(snap, queues, profile, now, random.Random(profile.seed))
    return {int(n) for n in decided.admitted()} & ids


def priority_terms(
    snap: Snapshot, queues: QueueManager, profile: Profile, job: Job, now: float
) -> dict[str, float] | None:
    """The pending job's weighted priority terms now (like sprio), if it is queued, on
    what `workloads.load` gave."""
    reprioritize(snap, queues, profile.half_life, now)
    w = queues.get(str(job.id))
    return queues.explain(w) if w is not None else None
