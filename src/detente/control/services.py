"""Service functions for inference services: apply, delete, and what they show.

A `Service` row holds the applied spec and the controller's state; its replicas are
jobs (``Job.service``) scheduled by the same driver as training
(`detente.control.service_controller` creates and stops them). Routers and `apply`
call these; they never touch processes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.api.services import ServiceDoc, replica_spec
from detente.control import jobs, workloads
from detente.control.jobs import JobError
from detente.control.store.models import ACTIVE, PENDING, Job, Service, User


def put(s: Session, actor: User, doc: ServiceDoc, now: float) -> str:
    """Creates or updates a service; returns "created", "changed (rolls replicas)",
    "changed" or "unchanged". JobError (400/403) if its queue, priority class or
    replica shape is not the caller's to use or could never fit."""
    name, spec = doc.metadata.name, doc.spec
    _, config = workloads.cluster_and_config(s)
    probe = replica_spec(name, spec, spec.queue or actor.team, 0, 1)
    queue = jobs.check_access(actor, probe, config)
    if (why := workloads.never_fits(workloads.whole_cluster(s), config, probe)) is not None:
        raise JobError(f"Service {name}: a replica {why[0].lower()}{why[1:]}")
    row = s.get(Service, name)
    data = spec.model_dump(mode="json", exclude_none=True)
    if row is None:
        s.add(Service(name=name, owner=actor.name, team=actor.team, queue=queue, spec=data,
                      revision=spec.revision(), desired=spec.initial_replicas(),
                      status={"events": [[now, "Created", f"by {actor.name}"]]},
                      created=now))  # fmt: skip
        return "created"
    if row.owner != actor.name and actor.role != "admin":
        raise JobError(f"Service {name} belongs to {row.owner}", 403)
    if row.spec == data and row.queue == queue:
        return "unchanged"
    rolls = row.revision != spec.revision()
    row.spec, row.queue, row.revision = data, queue, spec.revision()
    if spec.replicas is not None:
        row.desired = spec.replicas
    _note(row, now, "Updated", "rolls replicas" if rolls else "spec changed")
    return "changed (rolls replicas)" if rolls else "changed"


def remove(s: Session, actor: User, name: str, now: float) -> bool:
    """Deletes the service (its replicas are stopped by the controller); False if none."""
    row = s.get(Service, name)
    if row is None:
        return False
    if row.owner != actor.name and actor.role != "admin":
        raise JobError(f"Service {name} belongs to {row.owner}", 403)
    s.delete(row)
    return True


def _note(row: Service, now: float, kind: str, message: str) -> None:
    events = list((row.status or {}).get("events", []))[-49:]
    row.status = {**(row.status or {}), "events": [*events, [now, kind, message]]}


def replicas_of(s: Session, names: list[str] | None = None) -> dict[str, list[Job]]:
    """Pending and active replica jobs by service."""
    q = select(Job).where(Job.service.is_not(None), Job.state.in_((PENDING, *ACTIVE)))
    if names is not None:
        q = q.where(Job.service.in_(names))
    out: dict[str, list[Job]] = {}
    for j in s.scalars(q.order_by(Job.id)):
        out.setdefault(str(j.service), []).append(j)
    return out


def visible(s: Session, actor: User) -> list[Service]:
    q = select(Service).order_by(Service.name)
    if actor.role == "admin":
        return list(s.scalars(q))
    if actor.role == "team-admin":
        return list(s.scalars(q.where(Service.team == actor.team)))
    return list(s.scalars(q.where(Service.owner == actor.name)))


def view(row: Service, reps: list[Job], live: dict[str, Any], gateway: str) -> dict[str, Any]:
    """One service as ``detente services -o json`` shows it; ``live`` is the
    controller's in-memory state (probes, load, restarts)."""
    probes = live.get("replicas", {})
    replicas = [
        {"id": j.id, "name": j.name, "slot": j.slot, "node": (j.nodes or [None])[0],
         "state": probes.get(str(j.id), {}).get("state", _state(j)), "port": j.port,
         "restarts": live.get("restarts", {}).get(str(j.slot), 0),
         "last_probe": probes.get(str(j.id), {}).get("last_probe")}
        for j in reps
    ]  # fmt: skip
    for slot, until in live.get("backing_off", {}).items():
        replicas.append({"id": None, "name": f"{row.name}-{slot}", "slot": int(slot),
                         "node": None, "state": "CrashLoopBackOff", "port": None,
                         "restarts": live.get("restarts", {}).get(str(slot), 0),
                         "retry_at": until})  # fmt: skip
    return {
        "name": row.name, "owner": row.owner, "queue": row.queue, "model": row.spec.get("model"),
        "desired": row.desired, "ready": sum(r["state"] == "Ready" for r in replicas),
        "replicas": replicas, "rps": live.get("rps", 0.0),
        "concurrency": live.get("concurrency", 0.0), "url": f"{gateway}/{row.name}/",
        "revision": row.revision, "spec": row.spec,
        "scaling": (row.status or {}).get("scaling", []),
        "events": (row.status or {}).get("events", []),
    }  # fmt: skip


def _state(j: Job) -> str:
    return "Pending" if j.state == PENDING else ("Terminating" if j.state == "STOPPING" else
                                                 "Starting")  # fmt: skip
