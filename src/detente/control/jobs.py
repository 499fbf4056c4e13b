"""Job services over the store: submit, cancel, and what an actor may see.

Routers and the CLI call these; they never touch processes. Cancelling a running job
only records the intent (``STOPPING`` with ``stop_reason``); the reconciler signals.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from detente.control.spec import JobSpec
from detente.control.store.models import (
    ACTIVE,
    CANCELLED,
    PENDING,
    STOPPING,
    TERMINAL,
    Event,
    Job,
    User,
)


class JobError(ValueError):
    """A request that cannot be taken; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def event(s: Session, job_id: int, now: float, kind: str, message: str) -> None:
    s.add(Event(job_id=job_id, time=now, kind=kind, message=message))


def visible(actor: User) -> Select[tuple[Job]]:
    """Jobs ``actor`` may see: their own; their team's for a team admin; all for admin."""
    q = select(Job)
    if actor.role == "admin":
        return q
    if actor.role == "team-admin":
        return q.where((Job.team == actor.team) | (Job.user == actor.name))
    return q.where(Job.user == actor.name)


def submit(
    s: Session, actor: User, spec: JobSpec, queues: set[str], now: float, commit: bool = True
) -> list[int]:
    """Creates the job (one per array task) and returns the ids; JobError if the queue
    or a dependency does not exist. Nothing is created unless all of it is valid. With
    ``commit=False`` the caller owns the transaction (to apply many jobs at once)."""
    queue = spec.queue or actor.team
    if queue not in queues:
        raise JobError(f"spec.queue: unknown queue {queue!r} (known: {', '.join(sorted(queues))})")
    for d in spec.dependencies:
        if s.get(Job, d.job_id) is None:
            raise JobError(f"spec.dependencies: no job {d.job_id}")
    tasks: Sequence[int | None] = spec.array or [None]
    ids: list[int] = []
    first: Job | None = None
    for task in tasks:
        job = Job(
            name=spec.name, user=actor.name, team=actor.team, queue=queue, state=PENDING,
            spec=spec.model_dump(mode="json"), submit_time=now, attempt=0,
            array_task_id=task,
        )  # fmt: skip
        s.add(job)
        s.flush()
        if task is not None:
            first = first or job
            job.array_job_id = first.id
        ids.append(job.id)
        event(s, job.id, now, "Submitted", f"by {actor.name} to queue {queue}")
    if commit:
        s.commit()
    return ids


def get(s: Session, actor: User, job_id: int) -> Job:
    job = s.scalars(visible(actor).where(Job.id == job_id)).first()
    if job is None:
        raise JobError(f"no job {job_id}", 404)
    return job


def cancel(s: Session, actor: User, job_ids: Sequence[int], now: float) -> dict[int, str]:
    """job id → what happened. A pending job ends at once; an active one is stopped by
    the reconciler (SIGTERM, grace, SIGKILL). Ended jobs are left as they are."""
    out: dict[int, str] = {}
    for jid in job_ids:
        job = get(s, actor, jid)
        if job.state in TERMINAL:
            out[jid] = f"already {job.state}"
        elif job.state == PENDING:
            job.state, job.end_time, job.reason = CANCELLED, now, f"cancelled by {actor.name}"
            event(s, jid, now, "Cancelled", f"by {actor.name} while pending")
            out[jid] = CANCELLED
        elif job.state in ACTIVE:
            job.state, job.stop_reason = STOPPING, CANCELLED
            event(s, jid, now, "Cancelling", f"by {actor.name}")
            out[jid] = STOPPING
    s.commit()
    return out


def hold(s: Session, actor: User, job_ids: Sequence[int], held: bool, now: float) -> dict[int, str]:
    """Holds (or releases) pending jobs: a held job stays pending (``JobHeldUser``)."""
    out: dict[int, str] = {}
    for jid in job_ids:
        job = get(s, actor, jid)
        if job.state != PENDING:
            out[jid] = f"not pending ({job.state})"
            continue
        job.held = held
        event(s, jid, now, "Held" if held else "Released", f"by {actor.name}")
        out[jid] = "held" if held else "released"
    s.commit()
    return out
